"""`vigil loadtest`: run Locust against a service and gate on the SLO in loadtest/slo.yaml.

Locust runs headless in a subprocess (its gevent patching must not leak into the caller),
writing CSV stats and an HTML report to `out_dir`; the CSV is read back, shown as a
per-endpoint table and compared with the SLO. `SloVerdict.exit_code` is non-zero on breach.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import yaml

from vigil.config import Settings, process_env

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
USER_CLASSES = ("PredictUser", "DriftUser", "GrpcUser")


class LoadtestError(ValueError):
    """A user error: bad SLO file, unreachable service, Locust failing to run."""


@dataclass(frozen=True)
class Slo:
    p50_ms: float
    p99_ms: float
    max_error_rate: float
    min_rps: float
    duration_s: int
    users: int
    spawn_rate: float = 10.0
    rows_per_request: int = 1
    user_classes: tuple[str, ...] = ("PredictUser",)


@dataclass(frozen=True)
class EndpointStats:
    name: str
    method: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Check:
    name: str
    objective: str
    measured: str
    passed: bool


@dataclass
class SloVerdict:
    """Outcome of a gated run: the checks, per-endpoint numbers and where the reports are."""

    passed: bool
    checks: list[Check]
    endpoints: list[EndpointStats]
    total: EndpointStats
    html: Path
    csv_prefix: Path
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def load_slo(path: Path) -> Slo:
    """Read and validate an SLO file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LoadtestError(f"cannot read SLO file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise LoadtestError(f"{path}: expected a mapping of SLO fields")
    names = {f.name for f in dataclasses.fields(Slo)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise LoadtestError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    missing = sorted(f.name for f in dataclasses.fields(Slo)
                     if f.default is dataclasses.MISSING and f.name not in raw)
    if missing:
        raise LoadtestError(f"{path}: missing field(s) {', '.join(missing)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Slo):
        if f.name not in raw:
            continue
        value = raw[f.name]
        if f.name == "user_classes":
            bad = [c for c in value or [] if c not in USER_CLASSES]
            if not value or bad:
                raise LoadtestError(f"{path}: user_classes must list some of {', '.join(USER_CLASSES)}, got {value!r}")
            values[f.name] = tuple(value)
            continue
        kind = int if f.name in ("duration_s", "users", "rows_per_request") else float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (kind is int and value != int(value)):
            raise LoadtestError(f"{path}: {f.name} must be a non-negative {kind.__name__}, got {value!r}")
        values[f.name] = kind(value)
    if values["users"] < 1 or values["duration_s"] < 1:
        raise LoadtestError(f"{path}: users and duration_s must be at least 1")
    return Slo(**values)


def write_payloads(settings: Settings, host: str, path: Path) -> str:
    """Rows for the load: the served version's reference sample from the registry.

    Returns a note saying where the rows came from; on any registry problem writes
    nothing and lets the locustfile synthesise rows from /metadata.
    """
    meta = requests.get(f"{host}/metadata", timeout=10).json()
    name, version = meta["model"]["name"], str(meta["model"]["version"])
    features = [f["name"] for f in meta["inputs"]["features"]]
    try:
        frame = _reference_frame(settings, name, version)
        rows = frame[features].sample(n=min(len(frame), 2000), random_state=0)
    except Exception as exc:  # no registry, no artifact, other columns: fall back, say why
        return f"no reference sample for {name} v{version} ({type(exc).__name__}: {exc}); using synthetic rows"
    path.write_text(rows.to_json(orient="records"))
    return f"payloads: {len(rows)} rows of {name} v{version}'s reference sample"


def _reference_frame(settings: Settings, name: str, version: str) -> Any:
    import tempfile

    import pandas as pd

    from vigil import artifacts
    from vigil.registry import ModelRef, connect, resolve_version

    client = connect(settings)
    mv = resolve_version(client, ModelRef(name, version))
    run_id = (mv.tags or {}).get(artifacts.TAG_RUN_ID) or mv.run_id
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(client.download_artifacts(run_id, artifacts.ARTIFACT_REFERENCE, tmp))


def locust_command(settings: Settings, host: str, slo: Slo, out_dir: Path, payloads: Path | None,
                   web: bool = False) -> list[str]:
    """argv for one Locust run writing <out_dir>/locust_*.csv and report.html."""
    argv = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--host", host,
            "--users", str(slo.users), "--spawn-rate", str(slo.spawn_rate), "--run-time", f"{slo.duration_s}s",
            "--csv", str(out_dir / "locust"), "--html", str(out_dir / "report.html"),
            "--vigil-stats-out", str(out_dir / "stats.json"),
            "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2",
            "--vigil-rows", str(slo.rows_per_request), "--vigil-drift-seconds", str(slo.duration_s)]
    argv += ["--autostart", "--autoquit", "2", "--web-host", "127.0.0.1"] if web else ["--headless"]
    if payloads is not None:
        argv += ["--vigil-payloads", str(payloads)]
    if "GrpcUser" in slo.user_classes and settings.grpc_port:  # VIGIL_GRPC_PORT=0: no gRPC server
        argv += ["--vigil-grpc-host", f"{urlparse(host).hostname}:{settings.grpc_port}"]
    return argv + list(slo.user_classes)


def read_stats(json_file: Path) -> tuple[list[EndpointStats], EndpointStats]:
    """Per-endpoint rows and the aggregate from the final stats the locustfile writes.

    (Not the CSV: Locust writes it once a second, so it can miss the end of a short run.)
    """
    if not json_file.exists():
        raise LoadtestError(f"Locust wrote no statistics ({json_file} is missing)")
    entries = json.loads(json_file.read_text())
    rows = [_entry(e["name"], e["method"], [e]) for e in entries]
    total = _entry("Aggregated", "", entries)
    if total.requests == 0:
        raise LoadtestError("Locust made no requests: is the service answering at the host given?")
    return rows, total


def _entry(name: str, method: str, entries: list[dict[str, Any]]) -> EndpointStats:
    """Merge serialized StatsEntry dicts: counts add, response-time histograms merge."""
    histogram: dict[float, int] = {}
    for e in entries:
        for ms, count in e["response_times"].items():
            histogram[float(ms)] = histogram.get(float(ms), 0) + count
    requests_ = sum(e["num_requests"] for e in entries)
    span = max((e["last_request_timestamp"] or 0) for e in entries) - min(e["start_time"] for e in entries) if entries else 0
    return EndpointStats(
        name=name, method=method, requests=requests_, failures=sum(e["num_failures"] for e in entries),
        rps=requests_ / span if span > 0 else 0.0,
        p50_ms=_percentile(histogram, 0.50), p95_ms=_percentile(histogram, 0.95), p99_ms=_percentile(histogram, 0.99),
    )


def _percentile(histogram: dict[float, int], q: float) -> float:
    """Nearest-rank percentile over Locust's (rounded ms -> count) histogram."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank, seen = math.ceil(q * total), 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= rank:
            return ms
    return max(histogram)


def judge(slo: Slo, total: EndpointStats) -> list[Check]:
    """Each SLO objective against the aggregate numbers."""
    error_rate = total.failures / total.requests
    return [
        Check("p50 latency", f"<= {slo.p50_ms:g} ms", f"{total.p50_ms:g} ms", total.p50_ms <= slo.p50_ms),
        Check("p99 latency", f"<= {slo.p99_ms:g} ms", f"{total.p99_ms:g} ms", total.p99_ms <= slo.p99_ms),
        Check("error rate", f"<= {slo.max_error_rate:.3%}", f"{error_rate:.3%}", error_rate <= slo.max_error_rate),
        Check("throughput", f">= {slo.min_rps:g} req/s", f"{total.rps:.1f} req/s", total.rps >= slo.min_rps),
    ]


def print_verdict(verdict: SloVerdict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for note in verdict.notes:
        console.print(f"[dim]{note}[/dim]")
    table = Table(title="Load test per endpoint")
    for column in ("type", "endpoint", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("type", "endpoint") else "right")
    for e in [*verdict.endpoints, verdict.total]:
        table.add_row(e.method, e.name, str(e.requests), str(e.failures), f"{e.rps:.1f}",
                      f"{e.p50_ms:g}", f"{e.p95_ms:g}", f"{e.p99_ms:g}")
    console.print(table)
    slo = Table(title="SLO")
    for column in ("objective", "target", "measured", "result"):
        slo.add_column(column)
    for c in verdict.checks:
        slo.add_row(c.name, c.objective, c.measured, "[green]pass[/green]" if c.passed else "[red]BREACH[/red]")
    console.print(slo)
    word = "[green]SLO met[/green]" if verdict.passed else "[red]SLO breached[/red]"
    console.print(f"{word}; HTML report: {verdict.html}")


def run_loadtest(settings: Settings, host: str, slo_path: Path, out_dir: Path, users: int | None = None,
                 duration: int | None = None, web: bool = False) -> SloVerdict:
    """Run Locust against `host` (e.g. http://127.0.0.1:3000), print the table and verdict.

    `users` / `duration` (seconds) override the SLO file. Raises LoadtestError for user
    errors (bad SLO file, service not reachable, Locust failing); a breach is a verdict.
    """
    slo = load_slo(slo_path)
    if users is not None or duration is not None:
        slo = dataclasses.replace(slo, users=users or slo.users, duration_s=duration or slo.duration_s)
    host = host.rstrip("/")
    try:
        requests.get(f"{host}/readyz", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise LoadtestError(f"the service at {host} is not ready: {exc}") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payloads = out_dir / "payloads.json"
    note = write_payloads(settings, host, payloads)
    argv = locust_command(settings, host, slo, out_dir, payloads if payloads.exists() else None, web)
    log = out_dir / "locust.log"
    with log.open("wb") as out:
        result = subprocess.run(argv, env=process_env(settings), stdout=out, stderr=subprocess.STDOUT,
                                timeout=slo.duration_s + 120)
    # Locust exits 1 when any request failed; that is for the SLO to judge, not an error.
    if result.returncode not in (0, 1):
        raise LoadtestError(f"locust exited with {result.returncode}; see {log}:\n{log.read_text()[-2000:]}")
    endpoints, total = read_stats(out_dir / "stats.json")
    checks = judge(slo, total)
    verdict = SloVerdict(all(c.passed for c in checks), checks, endpoints, total, out_dir / "report.html",
                         out_dir / "locust", [note])
    print_verdict(verdict)
    (out_dir / "verdict.json").write_text(json.dumps(dataclasses.asdict(verdict), default=str, indent=2))
    return verdict
