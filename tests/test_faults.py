"""Issue 7's fault matrix: each broken neighbour, and what Vigil does about it, asserted.

Covered elsewhere and cited rather than repeated: kill -9 of the monitor under load
(tests/test_e2e_monitoring.py: 0 failed predictions, every profile ingested once) and a
corrupt ONNX on a new version (tests/test_hot_swap.py: old keeps serving, swap failure
counted). Here: a service worker killed under load (and readiness while the only worker is
gone), a hung and a slow monitor, the spool
cap, an unreachable registry (at start and while polling), a corrupt schema.json on a new
version, and a corrupted monitor state file. `make faults` runs this file alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from helpers import metric as _metric, wait_for as _wait_for

from vigil.config import Settings, load, process_env, replace
from vigil.procs import free_port, running, stop_process_group
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
GARBAGE = b"this is not an SQLite database\x00" * 64


# -- helpers ----------------------------------------------------------------------------------




def _serve(settings: Settings, tag: str, workers: int = 1, cores: str | None = None, **env: str):
    """A real `bentoml serve` with its own BENTOML_HOME (pinned to `cores` if given);
    returns (context manager, base url)."""
    served = load({"VIGIL_HOME": str(settings.home), "VIGIL_GRPC_PORT": "0", "VIGIL_PREDICTION_LOG": "off",
                   "VIGIL_MODEL": "models:/iris@champion", "VIGIL_MONITOR_URL": settings.monitor_url,
                   "VIGIL_PROFILE_SEND_TIMEOUT_S": "1", **env})
    port = free_port()
    argv, proc_env = serve_command(served, port=port, workers=workers)
    if cores is not None:
        argv = ["taskset", "-c", cores, *argv]
    proc_env["BENTOML_HOME"] = str(settings.home / f"bentoml-{tag}")  # BentoML wipes its metrics dir
    for key, value in env.items():
        proc_env[key] = value
    base = f"http://127.0.0.1:{port}"
    return running(argv, proc_env, f"{base}/readyz", log_path=settings.home / f"serve-{tag}.log",
                   timeout=120, cwd=PROJECT_ROOT), base


def _latencies_ms(base: str, n: int, seconds: float = 0.0) -> list[float]:
    """Latencies of `n` sequential predictions (or more, until `seconds` have passed)."""
    session = requests.Session()
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while len(times) < n or time.monotonic() < deadline:
        start = time.perf_counter()
        response = session.post(f"{base}/predict", json=ROW, timeout=10)
        times.append((time.perf_counter() - start) * 1e3)
        assert response.status_code == 200, response.text
    return times


class Proxy:
    """A TCP front for the monitor whose behaviour the test switches: forward, hang or slow."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.mode, self.delay_s = target_port, "forward", 0.0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []  # hung connections: accepted, never answered
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "hang":
                self.held.append(client)
                continue
            threading.Thread(target=self._pipe_pair, args=(client, self.delay_s), daemon=True).start()

    def _pipe_pair(self, client: socket.socket, delay: float) -> None:
        time.sleep(delay)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream, from_client=True)

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool = False) -> None:
        try:
            while data := src.recv(65536):
                # The mode applies to kept-alive connections too, request by request: a
                # producer that reuses its connection must meet the hang or the delay.
                if from_client and self.mode == "hang":
                    self.held.append(src)  # swallow the request, never answer
                    return
                if from_client and self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release_hung(self) -> None:
        for client in self.held:
            client.close()
        self.held.clear()

    def close(self) -> None:
        self.release_hung()
        self.sock.close()


class Monitor:
    """`python -m monitor` on its own port."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings, self.port = settings, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = settings.home / f"monitor-{port}.log"
        self._ctx = running([sys.executable, "-m", "monitor", "--port", str(port)],
                            {**process_env(settings), "VIGIL_LIFECYCLE_WORKER": "0"}, f"{self.url}/healthz",
                            log_path=self.log, timeout=60, cwd=PROJECT_ROOT)

    def __enter__(self) -> "Monitor":
        self.proc = self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)

    def status(self) -> dict:
        return requests.get(f"{self.url}/v1/status", timeout=30).json()

    def rows_ingested(self) -> int:
        return sum(v["rows_ingested"] for v in self.status()["versions"])


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """iris v1 trained (with its monitoring reference) and converted; champion = v1."""
    from converter import convert_version
    from lifecycle import promote, train

    settings = load({"VIGIL_HOME": str(tmp_path_factory.mktemp("faults"))})
    result = train(settings, reference_rows=50)
    convert_version(settings, f"models:/iris/{result.version}", progress=False)
    promote(settings, "iris", result.version, "production")
    return settings


@pytest.fixture(scope="module")
def monitor(world: Settings):
    """A monitor started on a state file overwritten with garbage (fault 6 sets it up)."""
    db = world.monitor_home / "monitor.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(GARBAGE)
    with Monitor(world, free_port()) as mon:
        yield mon


# -- fault 6: the monitor's state file is corrupt -------------------------------------------------


def test_corrupt_monitor_state_is_quarantined_and_the_monitor_keeps_ingesting(world: Settings, monitor: Monitor) -> None:
    quarantined = monitor.status()["state_quarantined"]
    assert quarantined is not None, "the monitor did not report the corrupt state file"
    moved = Path(quarantined["path"])
    assert moved.name.startswith("monitor.db.corrupt-") and moved.read_bytes() == GARBAGE
    assert "not a database" in quarantined["reason"]
    assert "is corrupt" in monitor.log.read_text()
    # ...and it ingests: a service streaming to it gets its rows counted (fault 2 checks the exact count).
    ctx, base = _serve(replace(world, monitor_url=monitor.url), "ingest", VIGIL_PROFILE_SLICE_SECONDS="0.05")
    with ctx:
        for _ in range(20):
            assert requests.post(f"{base}/predict", json=ROW, timeout=10).ok
        _wait_for(lambda: monitor.rows_ingested() >= 20, 30, "ingest after quarantine")


# -- fault 2: a hung and a slow monitor -------------------------------------------------------------


def test_hung_and_slow_monitor_leave_latency_alone_and_profiles_arrive_exactly_once(
    world: Settings, monitor: Monitor
) -> None:
    # The server of the test before may have spooled its last profiles at its stop (a send
    # that timed out on a loaded machine: kept, not lost). Replayed here they would be counted
    # as this server's replays and rows without its spooling them (CI saw replayed 14 of 13).
    for leftover in (world.spool_dir, world.raw_spool_dir):
        shutil.rmtree(leftover, ignore_errors=True)
    before = monitor.rows_ingested()
    proxy = Proxy(monitor.port)
    # Default slices: one profile a second, whatever the request rate.
    # The service tree (worker and profile agent) on one core, this client on the other: on a
    # 2-core machine, unpinned, the scheduler's placement of client and server alone moved p50 by
    # +-25 % between back-to-back runs, more than the 10 % this test decides on. Sharing its core
    # with the worker is also where a spooling agent would cost the worker anything.
    cpus = sorted(os.sched_getaffinity(0))
    server_core, client_core = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    ctx, base = _serve(replace(world, monitor_url=f"http://127.0.0.1:{proxy.port}"), "hung",
                       cores=None if server_core is None else str(server_core))
    # Phases of 1.5 s (1,000+ requests, at least one slice sent each): this VM's neighbours move
    # a 0.25-s phase's p50 by up to +-25 %, a 1.5-s phase's far less.
    n, runs, phase_s = 200, 6, 1.5
    sent = 0
    p50: dict[str, list[float]] = {"healthy": [], "hung": [], "slow": []}
    modes = ("healthy", "hung", "slow")
    try:
        with ctx:
            if client_core is not None:
                os.sched_setaffinity(0, {client_core})
            _latencies_ms(base, 200)  # warm-up (connections, caches)
            sent += 200
            # Interleaved, so drift in machine load hits every mode alike, and the order rotates
            # each round so no mode always runs first (or right after the hung one).
            for round_ in range(runs):
                for mode in modes[round_ % 3:] + modes[: round_ % 3]:
                    proxy.mode, proxy.delay_s = {"healthy": ("forward", 0.0), "hung": ("hang", 0.0),
                                                 "slow": ("forward", 0.5)}[mode]
                    times = _latencies_ms(base, n, phase_s)
                    p50[mode].append(statistics.median(times))
                    sent += len(times)
            # Spooling: hang long enough for sends to time out, at a pace profiling keeps up with.
            proxy.mode = "hang"
            session = requests.Session()
            deadline = time.monotonic() + 30
            while _metric(base, "vigil_profiles_spooled_total") < 1 and time.monotonic() < deadline:
                for _ in range(10):
                    assert session.post(f"{base}/predict", json=ROW, timeout=10).ok
                    sent += 1
                time.sleep(0.2)
            proxy.mode, proxy.delay_s = "forward", 0.0
            proxy.release_hung()
            spool = world.spool_dir
            _wait_for(lambda: not list(spool.glob("*.json")), 60, "the spool replayed")
            time.sleep(3)  # the last profiles (and any duplicate) land by now
            dropped = _metric(base, "vigil_profiles_dropped_total", '{reason="spool_full"}')
            lost_before_agent = _metric(base, "vigil_profile_agent_dropped_total", '{reason="spill_full"}') + \
                _metric(base, "vigil_profile_agent_dropped_total", '{reason="agent_died"}')
            spooled = _metric(base, "vigil_profiles_spooled_total")
            replayed = _metric(base, "vigil_profiles_replayed_total")
    finally:
        os.sched_setaffinity(0, cpus)
        proxy.close()
    medians = {mode: statistics.median(values) for mode, values in p50.items()}
    # Each round ran healthy, hung, slow back to back: the ratio within a round cancels the
    # machine's drift, and the median over rounds the noise of any one of them.
    ratios = {mode: statistics.median(m / h for m, h in zip(p50[mode], p50["healthy"])) for mode in ("hung", "slow")}
    print(f"\nfault 2: p50 ms per run {p50}; medians {medians}; paired ratios {ratios}")
    # At least one send timed out against the hung monitor and went to the spool (under a
    # loaded suite, one slice can hold the whole hung stretch).
    assert spooled >= 1, "the hung monitor should have sent profiles to the spool"
    assert replayed == spooled, "every spooled profile is replayed once the monitor answers"
    ingested = monitor.rows_ingested() - before
    print(f"fault 2: rows served {sent}, ingested {ingested}, spooled {spooled:.0f}, replayed {replayed:.0f}, "
          f"lost before the agent {lost_before_agent:.0f}")
    assert dropped == 0
    assert ingested <= sent, "a replayed profile was ingested twice"
    # Exactly once: a hung sender only delays the agent's slices (they spool), nothing is lost.
    assert lost_before_agent == 0 and ingested == sent, (ingested, sent, lost_before_agent)
    for mode in ("hung", "slow"):
        assert ratios[mode] <= 1.10, (mode, ratios, p50)  # within 10 % of the healthy run


# -- fault 3: the spool cap -------------------------------------------------------------------------


def test_full_spool_drops_the_newest_counts_it_and_the_alert_fires(world: Settings, tmp_path: Path) -> None:
    cap = 16_000
    home = replace(world, monitor_url=f"http://127.0.0.1:{free_port()}")  # nobody listens there
    ctx, base = _serve(home, "spool", VIGIL_PROFILE_SPOOL_BYTES=str(cap), VIGIL_PROFILE_SLICE_SECONDS="0.05")
    spool = world.spool_dir
    with ctx:
        session = requests.Session()
        dropped = lambda: _metric(base, "vigil_profiles_dropped_total", '{reason="spool_full"}')  # noqa: E731
        deadline = time.monotonic() + 60
        while dropped() < 3 and time.monotonic() < deadline:
            for _ in range(20):
                assert session.post(f"{base}/predict", json=ROW, timeout=10).ok
        kept = sorted(p.name for p in spool.glob("*.json"))
        first_drops = dropped()

        def more_traffic_dropped() -> bool:  # more traffic while full: only new profiles may be lost
            for _ in range(10):
                assert session.post(f"{base}/predict", json=ROW, timeout=10).ok
            return dropped() >= first_drops + 2

        _wait_for(more_traffic_dropped, 20, "more spool_full drops")
        total_dropped = dropped()
        still = sorted(p.name for p in spool.glob("*.json"))
    assert kept and still[: len(kept)] == kept, "the oldest spooled profiles must be kept (newest dropped)"
    assert sum(p.stat().st_size for p in spool.glob("*.json")) <= cap
    print(f"\nfault 3: cap {cap} B, {len(still)} profiles kept, {total_dropped:.0f} dropped (spool_full)")
    _promtool_fires(tmp_path, int(total_dropped))
    shutil.rmtree(spool, ignore_errors=True)  # the next tests start with an empty spool


def _promtool_fires(tmp_path: Path, dropped: int) -> None:
    """VigilProfilesDropped fires on the drop counter this service exported (promtool unit test)."""
    rules = PROJECT_ROOT / "deploy" / "prometheus" / "rules" / "vigil-service-alerts.yml"
    test = tmp_path / "drops_test.yml"
    test.write_text(f"""rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'vigil_profiles_dropped_total{{reason="spool_full"}}'
        values: '0 0 {dropped}x5'
    alert_rule_test:
      - eval_time: 4m
        alertname: VigilProfilesDropped
        exp_alerts:
          - exp_labels: {{severity: warning, category: pipeline, reason: spool_full}}
            exp_annotations:
              summary: "Profiles dropped (spool_full)"
              description: "The service lost profiles in the last 10 minutes: monitoring has a gap for those batches."
              runbook: "spool_full: restore the monitor (or raise VIGIL_PROFILE_SPOOL_BYTES); error: read the service log (a batch could not be profiled); rejected: read the monitor's 4xx reason (vigil_monitor_rejected_total)."
""")
    result = subprocess.run(["promtool", "test", "rules", str(test)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- fault 5: a corrupt schema.json on a new version (the corrupt ONNX case: test_hot_swap.py) ------


def test_corrupt_schema_on_new_version_keeps_the_old_one_serving(world: Settings, tmp_path: Path) -> None:
    from serving_models import build_iris, register_servable

    from vigil.registry import ModelRef
    from serving.bundle import load_bundle
    from serving.swap.reload import Reloader
    from serving.source import locate

    settings = replace(world, model="models:/iris@champion")
    current = load_bundle(settings, locate(settings))
    broken = build_iris(tmp_path / "broken").folder
    (broken / "schema.json").write_text('{"model_name": "iris", "features": [')  # truncated JSON
    version = register_servable(settings, broken, "iris", alias=None)
    from vigil.registry import connect

    connect(settings).set_registered_model_alias("iris", "champion", version)
    failures: list[str] = []
    installed: list[object] = []
    reloader = Reloader(settings, ModelRef("iris", alias="champion"), lambda: current, installed.append,
                        failures.append)
    try:
        assert reloader.check() is None
        assert failures == ["load"] and installed == []
        assert reloader.status()["failed_versions"] == {version: "load"}
    finally:
        connect(settings).set_registered_model_alias("iris", "champion", current.version)


# -- fault 4: the registry is unreachable -----------------------------------------------------------


def _mlflow_server(settings: Settings, port: int):
    argv = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", settings.mlflow_uri, "--workers", "1"]
    return running(argv, process_env(settings), f"http://127.0.0.1:{port}/health",
                   log_path=settings.home / f"mlflow-{port}.log", timeout=90, cwd=str(settings.home))


def test_unreachable_registry_serves_the_cached_model_and_reports_degraded(world: Settings) -> None:
    port = free_port()
    remote = replace(world, tracking_uri=f"http://127.0.0.1:{port}")
    env = {"VIGIL_TRACKING_URI": remote.tracking_uri, "VIGIL_RELOAD_INTERVAL_SECONDS": "0.5",
           "VIGIL_PROFILE_STREAM": "0"}
    shutil.rmtree(world.model_cache, ignore_errors=True)  # the cache must come from this run
    with _mlflow_server(world, port) as registry:
        ctx, base = _serve(world, "registry", **env)
        with ctx:
            meta = requests.get(f"{base}/metadata", timeout=10).json()
            assert meta["degraded"] is False and meta["reload"]["registry_reachable"] is True
            # the registry goes away while the service polls it
            stop_process_group(registry)
            _wait_for(lambda: requests.get(f"{base}/metadata", timeout=10).json()["degraded"], 30, "degraded")
            meta = requests.get(f"{base}/metadata", timeout=10).json()
            assert "registry unreachable" in meta["degraded_reason"]
            assert _metric(base, "vigil_degraded", '{reason="registry_unreachable"}') == 1
            assert _metric(base, "vigil_model_swap_failures_total", '{reason="registry"}') >= 1
            answer = requests.post(f"{base}/predict", json=ROW, timeout=10)
            assert answer.status_code == 200 and answer.json()["model"]["version"] == "1"
    # ...and a fresh start with the registry still down serves the cached champion, degraded.
    ctx, base = _serve(world, "registry-down", **env)
    with ctx as proc:
        meta = requests.get(f"{base}/metadata", timeout=10).json()
        assert meta["degraded"] is True and "registry unreachable" in meta["degraded_reason"]
        assert meta["model"]["version"] == "1"
        assert _metric(base, "vigil_degraded", '{reason="registry_unreachable"}') == 1
        answer = requests.post(f"{base}/predict", json=ROW, timeout=10)
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "1"
        # the registry comes back: degraded clears on the next poll
        with _mlflow_server(world, port):
            _wait_for(lambda: not requests.get(f"{base}/metadata", timeout=10).json()["degraded"], 30,
                      "degraded cleared")
            assert _metric(base, "vigil_degraded", '{reason="registry_unreachable"}') == 0
        assert proc.poll() is None, "the service must never crash"


# -- fault 1: a service worker killed under load ------------------------------------------------------


def _worker_pids(server: subprocess.Popen) -> list[int]:
    """BentoML's worker processes: the children running the service module (not the watcher/arbiter)."""
    pids = []
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:  # exited (or a zombie) between the listing and the look
            continue
    return pids


def test_killed_worker_is_restarted_and_only_its_in_flight_requests_fail(world: Settings) -> None:
    clients = 4
    ctx, base = _serve(world, "kill", workers=2, VIGIL_PROFILE_STREAM="0")
    outcomes: list[tuple[float, bool, str]] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                ok = session.post(f"{base}/predict", json=ROW, timeout=10).status_code == 200
                outcomes.append((time.monotonic(), ok, ""))
            except requests.RequestException as exc:
                outcomes.append((time.monotonic(), False, type(exc).__name__))
                session = requests.Session()

    with ctx as server:
        workers = _worker_pids(server)
        assert len(workers) == 2, f"expected 2 BentoML workers, found {workers}"
        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(2)
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _wait_for(lambda: len(set(_worker_pids(server)) - {workers[0]}) == 2, 60, "a replacement worker")
        restarted_in = time.monotonic() - killed_at
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(15)
        assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
    failed = [o for o in outcomes if not o[1]]
    after = [o for o in outcomes if o[0] > killed_at + restarted_in + 1]
    print(f"\nfault 1: {len(outcomes)} requests, {len(failed)} failed {[o[2] for o in failed]}, "
          f"worker replaced in {restarted_in:.1f} s")
    # Each client has at most one request in flight, and only connections held by the dead worker fail.
    assert len(failed) <= clients, failed
    assert after and all(ok for _, ok, _ in after), "requests after the restart must all succeed"


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def test_readiness_goes_down_with_the_only_worker_and_up_only_when_it_serves(world: Settings) -> None:
    """With one worker, /readyz fails while it is gone, and is back only once predictions work."""
    ctx, base = _serve(world, "kill1", workers=1, VIGIL_PROFILE_STREAM="0")
    with ctx as server:
        (worker,) = _worker_pids(server)
        assert _ready(base)
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()
        probes: list[tuple[float, bool]] = []
        while time.monotonic() - killed_at < 60:
            probes.append((time.monotonic() - killed_at, _ready(base)))
            if not probes[-1][1]:
                break
            time.sleep(0.05)
        assert probes and not probes[-1][1], f"/readyz stayed 200 after the only worker died: {probes[-5:]}"
        down_at = probes[-1][0]
        _wait_for(lambda: _ready(base), 60, "/readyz back to 200")
        up_at = time.monotonic() - killed_at
        # Ready must mean serving: the first prediction after readiness returns succeeds.
        answer = requests.post(f"{base}/predict", json=ROW, timeout=10)
        assert answer.status_code == 200, answer.text
        assert set(_worker_pids(server)) - {worker}, "no replacement worker"
    print(f"\nfault 1b: /readyz down {down_at:.2f} s after the kill, back after {up_at:.1f} s, "
          "first prediction after it 200")
