"""All of Vigil's settings in one typed place.

Every setting is a `VIGIL_<FIELD>` environment variable, declared once below with its
default, bound, README section and meaning. `load()` reads and checks them all from
those declarations, `to_env()` writes them back for a child process, and the README's
settings tables are printed from the same declarations (`vigil config --markdown`;
tests/test_readme.py keeps the README equal to it). Nothing else in the code base reads
`os.environ` for Vigil settings.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, get_type_hints

from vigil import config_parse as parse

# README sections of the settings tables, in order.
CORE = "Core and serving"
ACCESS = "Access control"
MONITORING = "Monitoring"
LIFECYCLE = "Lifecycle"
SECTIONS = (CORE, ACCESS, MONITORING, LIFECYCLE)
DEFAULT_MODEL = "models:/iris@champion"  # served when VIGIL_MODEL is empty, outside a bento


def setting(default: Any, section: str, doc: str, *, minimum: float | None = None, choices: tuple[str, ...] = (),
            secret: bool = False, shown: str = "", kind: str = "") -> Any:
    """Declare one setting: its default, README section and meaning, and how its value is checked.

    `kind` overrides the parser the field's type picks: "pem" (a PEM file, checked),
    "file" (a path made absolute), "token" (a bearer token, stripped). `shown` is the
    README's default column when the bare default would mislead. A `secret` is never
    printed (`vigil config`, `repr`).
    """
    return dataclasses.field(default=default, repr=not secret, metadata={
        "section": section, "doc": doc, "minimum": minimum, "choices": choices, "secret": secret,
        "shown": shown, "kind": kind,
    })


@dataclass(frozen=True)
class Settings:
    """Vigil's configuration, read from `VIGIL_*` environment variables (see `load`)."""

    # Core and serving
    home: Path = setting(
        Path(".vigil"), CORE,
        "runtime state: MLflow database and artifacts, BentoML home, model cache, spool, monitor state, logs",
        shown="`./.vigil`")
    tracking_uri: str = setting(
        "", CORE, "MLflow tracking + registry URI (e.g. an `mlflow server` URL)",
        shown="`sqlite:///$VIGIL_HOME/mlflow.db`")
    model: str = setting(
        "", CORE,
        "what the service serves: `models:/NAME/VERSION`, `models:/NAME@ALIAS`, or a folder with `model.onnx` + "
        "`schema.json`; a bento serves its packed model unless this is set (then it follows the registry)",
        shown="`models:/iris@champion`")
    host: str = setting("127.0.0.1", CORE, "address the service binds (`0.0.0.0` in the bento's container)")
    port: int = setting(3000, CORE, "service HTTP port", minimum=1)
    grpc_port: int = setting(
        8001, CORE, "service gRPC port (Open Inference Protocol v2); `0` turns gRPC off",
        minimum=0)
    grpc_max_message_bytes: int = setting(4 << 20, CORE, "largest gRPC message", minimum=1024)
    workers: int = setting(1, CORE, "service worker processes", minimum=1)
    slo_p99_ms: float = setting(25.0, CORE, "the latency SLO; the batching wait is derived from it", minimum=0.1)
    max_batch_size: int = setting(64, CORE, "most rows per ONNX call", minimum=1)
    max_latency_ms: float = setting(
        0.0, CORE, "longest a request waits for its batch to fill",
        shown="derived: min(5, SLO/10)")
    max_rows_per_request: int = setting(1024, CORE, "larger requests get 400", minimum=1)
    max_body_bytes: int = setting(1 << 20, CORE, "larger bodies get 413", minimum=64)
    max_queue_rows: int = setting(4096, CORE, "rows waiting in the batcher before new requests get 503", minimum=1)
    max_concurrent_requests: int = setting(
        512, CORE,
        "prediction requests in flight per worker (HTTP and gRPC together) before new ones get 503 / `RESOURCE_EXHAUSTED`",
        minimum=1)
    tls_cert_file: str = setting(
        "", CORE, "PEM certificate (chain): with the key, the service (HTTP + gRPC) and the monitor serve TLS",
        kind="pem")
    tls_key_file: str = setting("", CORE, "PEM private key (unencrypted) of that certificate", kind="pem")
    tls_ca_file: str = setting(
        "", CORE,
        "CA bundle Vigil's own clients (profile producer, lifecycle worker, `vigil report`, readiness probes) trust",
        shown="system trust store", kind="pem")
    ort_threads: int = setting(1, CORE, "ONNX Runtime intra-op threads per worker", minimum=1)
    reload_interval_seconds: float = setting(
        5.0, CORE,
        "a service on `models:/NAME@ALIAS` polls the alias this often per worker and hot-swaps when it moves; `0` = webhooks only")
    reload_webhook_secret: str = setting(
        "", CORE,
        "HMAC secret of the MLflow webhook posting to `/v1/webhooks/mlflow`; when set, unsigned or stale deliveries get 401",
        secret=True)

    # Access control
    api_token: str = setting(
        "", ACCESS,
        "bearer token required on the monitor's routes (all but `/healthz`, `/metrics`, `/openapi.json`) and the "
        "service's `/v1/webhooks/mlflow`; Vigil's own clients send it",
        secret=True, kind="token")
    api_token_file: str = setting(
        "", ACCESS, "file holding the API token instead (a mounted secret); not together with `VIGIL_API_TOKEN`",
        kind="file")
    predict_token: str = setting(
        "", ACCESS, "bearer token required on the prediction routes (HTTP and gRPC `ModelInfer`, `ModelStreamInfer`)",
        secret=True, shown="none (predictions open)", kind="token")
    predict_token_file: str = setting(
        "", ACCESS, "file holding the predict token instead; not together with `VIGIL_PREDICT_TOKEN`", kind="file")

    # Monitoring
    monitor_url: str = setting("http://127.0.0.1:3100", MONITORING, "where the service streams profiles")
    monitor_port: int = setting(3100, MONITORING, "monitor HTTP port", minimum=1)
    profile_stream: bool = setting(
        True, MONITORING, "`0` turns the producer off (profiles are neither made nor sent)")
    profile_queue_size: int = setting(
        256, MONITORING, "100-ms hand-offs of served rows waiting for the worker's agent process (more are spilled to disk)",
        minimum=1)
    profile_slice_seconds: float = setting(
        1.0, MONITORING, "each agent sends one profile per model version and slice of this many seconds", minimum=0.01)
    profile_slice_rows: int = setting(
        65536, MONITORING, "...or sooner, once a slice holds this many rows", minimum=1)
    profile_spool_bytes: int = setting(
        64 << 20, MONITORING, "on-disk spool cap while the monitor is away; past it messages are dropped and counted")
    profile_send_timeout_s: float = setting(
        2.0, MONITORING, "a send slower than this is spooled and retried",
        minimum=0.05)
    prediction_log: str = setting(
        "", MONITORING, "the prediction log's folder; `off` disables it",
        shown="`$VIGIL_HOME/predictions`")
    prediction_log_flush_seconds: float = setting(
        5.0, MONITORING, "rows are written this often; a crash loses at most this much",
        minimum=0.05)
    prediction_log_max_rows_per_second: int = setting(
        0, MONITORING, "`0` = every row (labels join only logged rows); else per worker every row up to this, then a "
        "uniform sample")
    prediction_log_retention_days: int = setting(
        30, MONITORING, "date partitions older than this are deleted",
        minimum=1)
    monitor_window_seconds: int = setting(60, MONITORING, "tumbling window length (event time)", minimum=1)
    monitor_drift_share: float = setting(
        0.3, MONITORING, "dataset drift when major drift reaches this importance-weighted share of features",
        minimum=0.0)
    monitor_drift_alpha: float = setting(
        0.001, MONITORING, "false-alarm rate per window: KS / chi-square tests at this level, split over the "
        "columns (Bonferroni)", minimum=1e-12)
    monitor_drift_psi_minor: float = setting(
        0.1, MONITORING, "PSI from which a significant change is `minor` drift (dashboard only)", minimum=0.0)
    monitor_drift_psi_major: float = setting(
        0.25, MONITORING, "PSI from which a significant change is `major` drift (alerts, retraining)", minimum=0.0)
    monitor_retention_seconds: int = setting(
        7 * 24 * 3600, MONITORING, "how long pending predictions and unmatched labels are kept",
        minimum=1)
    monitor_max_body_bytes: int = setting(
        16 << 20, MONITORING, "largest message the monitor accepts (413 beyond)",
        minimum=1024)

    # Lifecycle
    actor: str = setting("", LIFECYCLE, "who registry moves are recorded as", shown="your login")
    gate_metric: str = setting(
        "", LIFECYCLE, "holdout metric the promotion gate compares",
        shown="the version's primary metric")
    gate_tolerance: float = setting(0.0, LIFECYCLE, "a candidate may trail the champion by this much")
    rollback_margin: float = setting(0.05, LIFECYCLE, "live quality this far below the previous champion's...")
    rollback_windows: int = setting(3, LIFECYCLE, "...over this many consecutive windows...", minimum=1)
    rollback_min_labels: int = setting(30, LIFECYCLE, "...with at least this many labels each rolls back", minimum=1)
    rollback_cooldown_seconds: int = setting(600, LIFECYCLE, "no automatic rollback this soon after a champion move")
    auto_move_period_seconds: int = setting(3600, LIFECYCLE, "at most one automatic move per period")
    rollback_dry_run: bool = setting(False, LIFECYCLE, "`1`: only alert and audit, never move the alias")
    retrain_windows: int = setting(
        3, LIFECYCLE, "dataset drift persisting this many windows triggers retraining",
        minimum=1)
    retrain_debounce_seconds: int = setting(3600, LIFECYCLE, "at most one retraining trigger per period per model")
    retrain_data: str = setting(
        "", LIFECYCLE,
        "recent labelled data for retraining: a CSV, or a folder of CSV/Parquet; unset = the log's labelled rows",
        shown="the prediction log")
    retrain_refresh_holdout: bool = setting(
        False, LIFECYCLE, "`1`: a retraining makes a held-out share of the recent rows the evaluation set "
        "(drift that changed the answers); the champion is re-scored on it")
    retrain_action: str = setting(
        "local", LIFECYCLE, "`local` (run `vigil retrain`) or `webhook`",
        choices=("local", "webhook"))
    retrain_webhook_url: str = setting(
        "", LIFECYCLE, "Jenkins job / GitHub `workflow_dispatch` URL for the webhook action")
    retrain_webhook_secret: str = setting("", LIFECYCLE, "sent verbatim in the header below", secret=True)
    retrain_webhook_header: str = setting("Authorization", LIFECYCLE, "header carrying the secret")
    retrain_webhook_style: str = setting(
        "generic", LIFECYCLE, "`generic` JSON body, or `github` (`workflow_dispatch` body)",
        choices=("generic", "github"))
    retrain_webhook_ref: str = setting("main", LIFECYCLE, "git ref for the `github` style")
    auto_promote: bool = setting(False, LIFECYCLE, "`1`: a retrained version that passes the gate goes to production")
    lifecycle_poll_seconds: float = setting(
        30.0, LIFECYCLE, "how often the lifecycle worker polls the monitor",
        minimum=0.1)
    lifecycle_worker: bool = setting(
        True, LIFECYCLE, "the monitor runs the lifecycle worker (rollback + retraining); `0` turns it off")

    @property
    def model_uri(self) -> str:
        """What to serve: VIGIL_MODEL, else the default alias (a bento without it serves its packed model)."""
        return self.model.strip() or DEFAULT_MODEL

    @property
    def mlflow_uri(self) -> str:
        """Tracking + registry URI: the explicit one, or SQLite under the home."""
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def tls_enabled(self) -> bool:
        """True when the service and the monitor serve TLS (certificate and key are set)."""
        return bool(self.tls_cert_file and self.tls_key_file)

    @property
    def scheme(self) -> str:
        """URL scheme of the servers Vigil starts with these settings."""
        return "https" if self.tls_enabled else "http"

    @property
    def tls_verify(self) -> str | bool:
        """`verify=` for Vigil's own HTTPS clients (requests): the CA bundle, else the system store."""
        return self.tls_ca_file or True

    @property
    def artifact_root(self) -> Path:
        """Where experiments created by Vigil keep artifacts with the embedded registry."""
        return self.home / "artifacts"

    @property
    def monitor_home(self) -> Path:
        """The monitor's persisted state (SQLite) and reference cache."""
        return self.home / "monitor"

    @property
    def spool_dir(self) -> Path:
        """Profiles the service could not deliver yet, replayed in order."""
        return self.home / "spool" / "profiles"

    @property
    def prediction_log_dir(self) -> Path | None:
        """The prediction log's root folder, or None when VIGIL_PREDICTION_LOG=off."""
        if self.prediction_log.strip().lower() in ("off", "0", "false", "no"):
            return None
        return Path(self.prediction_log).expanduser().resolve() if self.prediction_log else self.home / "predictions"

    @property
    def raw_spool_dir(self) -> Path:
        """Served batches the profile agent's queue had no room for (read back by the agent)."""
        return self.home / "spool" / "raw"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def model_cache(self) -> Path:
        """Downloaded ONNX models, one folder per registered name and version."""
        return self.home / "cache" / "models"

    @property
    def batch_latency_ms(self) -> float:
        """How long the batcher may hold a request for more rows to arrive.

        BentoML's default (60 s) is meant for throughput jobs. On a latency path the
        batching wait must be a small slice of the p99 SLO, or the queue alone spends
        the budget: we take a tenth of it, capped at 5 ms, unless set explicitly.
        """
        if self.max_latency_ms > 0:
            return self.max_latency_ms
        return min(5.0, self.slo_p99_ms / 10.0)


def env_name(field: str) -> str:
    """The environment variable of a setting: VIGIL_ + its field name in capitals."""
    return f"VIGIL_{field.upper()}"


def _parse(field: dataclasses.Field, kind: type, raw: str) -> Any:
    name, meta = env_name(field.name), field.metadata
    if meta["kind"] == "pem":
        return parse.pem(raw, name)
    if meta["kind"] == "file":
        return parse.absolute(raw)
    if meta["kind"] == "token":
        return raw.strip()
    if kind is Path:
        return Path(raw).expanduser().resolve()
    if kind is bool:
        return parse.boolean(raw, name)
    minimum = 0 if meta["minimum"] is None else meta["minimum"]  # no setting is ever negative
    if kind is int:
        return parse.integer(raw, name, minimum)
    if kind is float:
        return parse.number(raw, name, minimum)
    if meta["choices"]:
        return parse.choice(raw, name, meta["choices"])
    return raw


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    types = get_type_hints(Settings)
    values = {}
    for field in dataclasses.fields(Settings):
        raw = parse.text(env, env_name(field.name), "")
        values[field.name] = _parse(field, types[field.name], raw) if raw else field.default
    values["home"] = Path(values["home"]).expanduser().resolve()
    parse.check_tls(values["tls_cert_file"], values["tls_key_file"])
    parse.check_tokens(values)
    return Settings(**values)


def to_env(settings: Settings) -> dict[str, str]:
    """Every setting that differs from empty as its VIGIL_* variable: what `load` reads back as `settings`."""
    env = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value not in ("", None):
            env[env_name(field.name)] = str(int(value)) if isinstance(value, bool) else str(value)
    return env


# Third-party switches that Vigil turns off unless the user set them: usage tracking and
# telemetry of whylogs, MLflow and BentoML, and MLflow's git/env probing noise.
THIRD_PARTY_DEFAULTS: dict[str, str] = {
    "WHYLOGS_NO_ANALYTICS": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "BENTOML_DO_NOT_TRACK": "True",
    "GIT_PYTHON_REFRESH": "quiet",
    # Vigil draws its own progress bars; MLflow's per-download bars would interleave.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Fail fast against an unreachable `mlflow server`: MLflow's defaults (7 retries with
    # exponential backoff, 120 s timeout) stall a registry poll or a start for minutes, while
    # the service has a cached model to fall back on (serving/source.py).
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def process_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a Vigil child process (server, monitor, job) should run with."""
    env = dict(os.environ if base is None else base)
    for key, value in THIRD_PARTY_DEFAULTS.items():
        env.setdefault(key, value)
    env.setdefault("BENTOML_HOME", str(settings.bentoml_home))
    env["VIGIL_HOME"] = str(settings.home)
    env.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_uri)
    return env


def apply_to_process(settings: Settings) -> None:
    """Set the third-party defaults in this process (before importing mlflow/bentoml)."""
    for key, value in process_env(settings).items():
        os.environ.setdefault(key, value)


def replace(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with some fields changed (tests and the CLI use it)."""
    return dataclasses.replace(settings, **changes)


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return f"`{int(default)}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`" if default != "" else "none"


def settings_table(section: str) -> str:
    """The README's table of one section's settings, from the declarations above."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(Settings):
        meta = field.metadata
        if meta["section"] == section:
            lines.append(f"| `{env_name(field.name)}` | {meta['shown'] or _shown(field.default)} | {meta['doc']} |")
    return "\n".join(lines)
