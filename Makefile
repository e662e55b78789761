# Vigil's two commands: `make demo` (the main job) and `make test`.
# Both create/refresh .venv first, so a fresh clone needs only Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test test-fast bench bench-drift soak fuzz faults topology clean help

help:
	@echo "make install  create/refresh .venv with pinned dependencies"
	@echo "make demo     the full loop: serve v1, drift, retrain, hot swap, bad v3, automatic rollback (~1 min)"
	@echo "make test     the whole test suite (installs prometheus, alertmanager, postgresql, wrk, h2load from Debian if missing)"
	@echo "make bench    benchmark Vigil against its peers (BENCHMARKS.md, benchmarks.png; ~12 min)"
	@echo "make bench-drift  drift verdict vs Evidently-style defaults and PSI on stable/harmless/harmful windows (BENCHMARKS.md; ~1 min)"
	@echo "make soak     10 min at 80 % of the sustained maximum, HTTP + gRPC, monitor streaming (BENCHMARKS.md, soak.png; ~17 min)"
	@echo "make fuzz     fuzz every HTTP route and gRPC of the service and the monitor (FUZZ_CASES, default 12000)"
	@echo "make faults   the fault matrix alone: killed worker, hung/slow monitor, full spool, registry down, corrupt state (~2 min)"
	@echo "make topology the production topology live: PostgreSQL MLflow, 3 bento replicas, monitor, Prometheus, Alertmanager (~2 min)"
	@echo "make clean    remove .vigil runtime state"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Vigil needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

system-deps:
	bash .ci/system-deps

demo: install
	$(BIN)/vigil demo

test: install system-deps
	$(BIN)/python -m pytest

# Vigil against its peers, side by side (15 s per server and concurrency), then the
# 200,000-request memory check, the 256-client overload check, what monitoring costs (off
# vs defaults, paired) and 16 producers feeding one monitor for 60 s: ~17 minutes; writes
# BENCHMARKS.md + benchmarks.png.
bench: install system-deps
	$(BIN)/vigil bench --memory --overload --monitoring $(BENCH_ARGS)

# The drift benchmark: Vigil's verdict vs Evidently-style defaults and PSI on stable,
# harmless and harmful windows of three data sets (single process, ~1 min); writes its
# section of BENCHMARKS.md and exits 1 on a missed floor.
bench-drift: install
	$(BIN)/python -m loadtest.drift_bench

# The soak: measure the burst of the HTTP + gRPC mix with monitoring off, then climb 30-s
# constant-rate steps of it on the same server watched and unwatched, interleaved, to each one's
# sustained maximum (watched: serving + monitoring keeping up; floor 0.9 x the unwatched one),
# then 1 min warm-up + 10 min at 80 % of that; worker RSS, p99 per 10 s, errors, monitor lag.
# Exit 1 on a missed floor.
# Writes the Soak section of BENCHMARKS.md + soak.png. SOAK_ARGS e.g. "--minutes 2".
soak: install system-deps
	$(BIN)/vigil soak $(SOAK_ARGS)

# The long fuzz: the suite's seeded run (tests/test_fuzz.py) with FUZZ_CASES
# cases in total across routes instead of ~600. Zero 5xx, zero crashed workers, or it fails.
FUZZ_CASES ?= 12000
fuzz: install
	FUZZ_CASES=$(FUZZ_CASES) $(BIN)/python -m pytest tests/test_fuzz.py -s -p no:cacheprovider --timeout=3600

# The fault matrix alone (also part of `make test`); -s prints each fault's figures.
faults: install system-deps
	$(BIN)/python -m pytest tests/test_faults.py -s -p no:cacheprovider

# The production topology on one machine, as the Helm chart runs it (loadtest/topology/):
# PostgreSQL -> mlflow server -> train/convert/promote v1 -> vigil export -> the bento in a
# clean venv -> monitor -> 3 x bentoml serve on models:/iris@champion -> Alertmanager ->
# Prometheus; then drift -> alert -> retrain -> all replicas swap -> rollback -> swap back.
topology: install system-deps
	$(BIN)/vigil topology $(TOPOLOGY_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not integration"

clean:
	rm -rf .vigil
