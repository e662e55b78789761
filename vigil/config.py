"""All of Vigil's settings in one typed place.

Every setting is an environment variable with a ``VIGIL_`` prefix (documented in the
README). Nothing else in the code base reads ``os.environ`` for Vigil settings: call
:func:`load` and use the returned :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "")
    return value if value.strip() else default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _env(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _env(env, name, "1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = _env(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _pem(env: Mapping[str, str], name: str) -> str:
    """A PEM file's absolute path ("" when unset); a missing, unreadable or non-PEM file is a config error."""
    raw = _env(env, name, "").strip()
    if not raw:
        return ""
    path = Path(raw).expanduser().resolve()  # absolute: `bentoml serve` runs from the project root
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{name}={raw}: cannot read the file ({exc.strerror or exc})") from None
    if b"-----BEGIN " not in text:
        raise ValueError(f"{name}={raw}: not a PEM file (no '-----BEGIN' line)")
    return str(path)


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ValueError("the key is encrypted; Vigil needs an unencrypted PEM key")


def _tls(env: Mapping[str, str]) -> dict[str, str]:
    """The TLS files: certificate and key both or neither, and they must belong together."""
    cert, key = _pem(env, "VIGIL_TLS_CERT_FILE"), _pem(env, "VIGIL_TLS_KEY_FILE")
    if bool(cert) != bool(key):
        given, missing = "VIGIL_TLS_CERT_FILE", "VIGIL_TLS_KEY_FILE"
        if key:
            given, missing = missing, given
        raise ValueError(f"TLS needs both VIGIL_TLS_CERT_FILE and VIGIL_TLS_KEY_FILE: {given} is set, {missing} is not")
    if cert:
        # Checked here so a bad pair stops `load()` with one line, not a worker crash loop.
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=_no_password)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"VIGIL_TLS_CERT_FILE / VIGIL_TLS_KEY_FILE: cannot use {cert} with {key}: {exc}") from None
    return {"tls_cert_file": cert, "tls_key_file": key, "tls_ca_file": _pem(env, "VIGIL_TLS_CA_FILE")}


def _tokens(env: Mapping[str, str]) -> dict[str, str]:
    """The bearer tokens' raw settings: a value or a secret file's absolute path, checked now.

    Only the path of a file is kept (resolved by vigil.auth where it is used), so a token
    read from a mounted secret never travels into a child's environment (launch.settings_env).
    """
    from vigil.auth import resolve_token

    fields = {}
    for field_name, name, file_name in (("api_token", "VIGIL_API_TOKEN", "VIGIL_API_TOKEN_FILE"),
                                        ("predict_token", "VIGIL_PREDICT_TOKEN", "VIGIL_PREDICT_TOKEN_FILE")):
        value, file = env.get(name, "").strip(), env.get(file_name, "").strip()
        file = str(Path(file).expanduser().resolve()) if file else ""  # `bentoml serve` runs elsewhere
        resolve_token(name, value, file)  # both set, unreadable or empty file: a config error at start
        fields[field_name], fields[f"{field_name}_file"] = value, file
    return fields


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _env(env, name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Vigil's configuration, read from ``VIGIL_*`` environment variables."""

    home: Path = field(default_factory=lambda: Path.cwd() / ".vigil")
    tracking_uri: str = ""
    model: str = "models:/iris@champion"
    host: str = "127.0.0.1"
    port: int = 3000
    grpc_port: int = 8001  # 0 = no gRPC server
    grpc_max_message_bytes: int = 4 << 20  # largest gRPC request/response message
    workers: int = 1
    monitor_url: str = "http://127.0.0.1:3100"
    monitor_port: int = 3100
    slo_p99_ms: float = 25.0
    max_batch_size: int = 64
    max_latency_ms: float = 0.0  # 0 = derive from the SLO, see `batch_latency_ms`
    max_rows_per_request: int = 1024
    max_body_bytes: int = 1 << 20
    max_queue_rows: int = 4096
    # Per worker: prediction requests in flight (HTTP predict routes from the first body byte,
    # gRPC ModelInfer); beyond it 503 / RESOURCE_EXHAUSTED. Above the benchmark's c=256 on purpose.
    max_concurrent_requests: int = 512
    ort_threads: int = 1
    # TLS (PEM files): with cert + key, the service's HTTP and gRPC ports and the monitor serve TLS.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""  # CA bundle Vigil's own clients trust for https/TLS; "" = the system trust store
    # Bearer tokens (vigil/auth.py): a value or a mounted secret file each. The API token guards
    # the monitor and the service's admin route; the predict token, when set, the prediction routes.
    api_token: str = field(default="", repr=False)
    api_token_file: str = ""
    predict_token: str = field(default="", repr=False)  # "" = predictions are open
    predict_token_file: str = ""
    # Live hot swap (vigil/serving/reload.py): a service on models:/NAME@ALIAS follows the alias.
    reload_interval_seconds: float = 5.0  # registry poll period per worker; 0 = no polling
    reload_webhook_secret: str = field(default="", repr=False)  # MLflow webhook HMAC secret; "" = unsigned webhooks accepted
    # Monitoring: the producer in the service (profile stream) and the monitor process.
    profile_stream: bool = True  # VIGIL_PROFILE_STREAM=0 turns the producer off
    profile_queue_size: int = 1024  # batches waiting for the profiling thread
    profile_spool_bytes: int = 64 << 20  # on-disk spool cap while the monitor is away
    profile_send_timeout_s: float = 2.0
    profile_linger_ms: float = 100.0  # merge batches served within this into one profile; 0 = one per batch
    monitor_window_seconds: int = 60  # tumbling window length (event time)
    monitor_drift_share: float = 0.5  # dataset drift when this share of features drifted
    monitor_drift_alpha: float = 0.05  # KS / chi-square significance for small windows
    monitor_retention_seconds: int = 7 * 24 * 3600  # pending predictions/labels kept
    monitor_max_body_bytes: int = 16 << 20
    # The prediction log (vigil/predlog/): served rows + late labels as Parquet.
    prediction_log: str = ""  # folder; "" = $VIGIL_HOME/predictions, "off" = no log
    prediction_log_flush_seconds: float = 5.0  # a crash loses at most this much buffered log
    prediction_log_max_rows_per_second: int = 1000  # every row up to this, then a uniform sample; 0 = all
    prediction_log_retention_days: int = 30  # date partitions older than this are deleted
    # Lifecycle (lifecycle/): promotion gate, automatic rollback, retraining on drift.
    actor: str = ""  # who registry moves are recorded as (default: the OS user)
    gate_metric: str = ""  # holdout metric the gate compares ("" = the version's primary metric)
    gate_tolerance: float = 0.0  # candidate may trail the champion by this much
    rollback_margin: float = 0.05  # live quality this far below the previous champion's...
    rollback_windows: int = 3  # ...over this many consecutive windows...
    rollback_min_labels: int = 30  # ...with at least this many labels each
    rollback_cooldown_seconds: int = 600  # no automatic rollback this soon after a champion move
    auto_move_period_seconds: int = 3600  # at most one automatic move per period
    rollback_dry_run: bool = False  # only alert and audit, never move the alias
    retrain_windows: int = 3  # dataset drift persisting this many windows triggers retraining
    retrain_debounce_seconds: int = 3600  # at most one retraining trigger per period per model
    retrain_data: str = ""  # recent labelled data: a CSV file or a directory of CSV/Parquet; "" = the prediction log
    retrain_action: str = "local"  # "local" (vigil retrain in-process) | "webhook"
    retrain_webhook_url: str = ""
    retrain_webhook_secret: str = field(default="", repr=False)
    retrain_webhook_header: str = "Authorization"  # header carrying the secret, verbatim
    retrain_webhook_style: str = "generic"  # "generic" JSON | "github" workflow_dispatch body
    retrain_webhook_ref: str = "main"  # git ref for the github style
    auto_promote: bool = False  # retraining may promote to production when the gate passes
    lifecycle_poll_seconds: float = 30.0  # how often the lifecycle worker polls the monitor
    lifecycle_worker: bool = True  # the monitor hosts the lifecycle worker; VIGIL_LIFECYCLE_WORKER=0 turns it off

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


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    defaults = Settings()
    return Settings(
        home=Path(_env(env, "VIGIL_HOME", str(defaults.home))).expanduser().resolve(),
        tracking_uri=_env(env, "VIGIL_TRACKING_URI", ""),
        model=_env(env, "VIGIL_MODEL", defaults.model),
        host=_env(env, "VIGIL_HOST", defaults.host),
        port=_int(env, "VIGIL_PORT", defaults.port, 1),
        grpc_port=_int(env, "VIGIL_GRPC_PORT", defaults.grpc_port, 0),
        grpc_max_message_bytes=_int(env, "VIGIL_GRPC_MAX_MESSAGE_BYTES", defaults.grpc_max_message_bytes, 1024),
        workers=_int(env, "VIGIL_WORKERS", defaults.workers, 1),
        monitor_url=_env(env, "VIGIL_MONITOR_URL", defaults.monitor_url),
        monitor_port=_int(env, "VIGIL_MONITOR_PORT", defaults.monitor_port, 1),
        slo_p99_ms=_float(env, "VIGIL_SLO_P99_MS", defaults.slo_p99_ms, 0.1),
        max_batch_size=_int(env, "VIGIL_MAX_BATCH_SIZE", defaults.max_batch_size, 1),
        max_latency_ms=_float(env, "VIGIL_MAX_LATENCY_MS", defaults.max_latency_ms),
        max_rows_per_request=_int(env, "VIGIL_MAX_ROWS_PER_REQUEST", defaults.max_rows_per_request, 1),
        max_body_bytes=_int(env, "VIGIL_MAX_BODY_BYTES", defaults.max_body_bytes, 64),
        max_queue_rows=_int(env, "VIGIL_MAX_QUEUE_ROWS", defaults.max_queue_rows, 1),
        max_concurrent_requests=_int(env, "VIGIL_MAX_CONCURRENT_REQUESTS", defaults.max_concurrent_requests, 1),
        ort_threads=_int(env, "VIGIL_ORT_THREADS", defaults.ort_threads, 1),
        **_tls(env),
        **_tokens(env),
        reload_interval_seconds=_float(env, "VIGIL_RELOAD_INTERVAL_SECONDS", defaults.reload_interval_seconds),
        reload_webhook_secret=_env(env, "VIGIL_RELOAD_WEBHOOK_SECRET", ""),
        profile_stream=_bool(env, "VIGIL_PROFILE_STREAM", defaults.profile_stream),
        profile_queue_size=_int(env, "VIGIL_PROFILE_QUEUE_SIZE", defaults.profile_queue_size, 1),
        profile_spool_bytes=_int(env, "VIGIL_PROFILE_SPOOL_BYTES", defaults.profile_spool_bytes),
        profile_send_timeout_s=_float(env, "VIGIL_PROFILE_SEND_TIMEOUT_S", defaults.profile_send_timeout_s, 0.05),
        profile_linger_ms=_float(env, "VIGIL_PROFILE_LINGER_MS", defaults.profile_linger_ms),
        monitor_window_seconds=_int(env, "VIGIL_MONITOR_WINDOW_SECONDS", defaults.monitor_window_seconds, 1),
        monitor_drift_share=_float(env, "VIGIL_MONITOR_DRIFT_SHARE", defaults.monitor_drift_share, 0.0),
        monitor_drift_alpha=_float(env, "VIGIL_MONITOR_DRIFT_ALPHA", defaults.monitor_drift_alpha, 1e-9),
        monitor_retention_seconds=_int(env, "VIGIL_MONITOR_RETENTION_SECONDS", defaults.monitor_retention_seconds, 1),
        monitor_max_body_bytes=_int(env, "VIGIL_MONITOR_MAX_BODY_BYTES", defaults.monitor_max_body_bytes, 1024),
        prediction_log=_env(env, "VIGIL_PREDICTION_LOG", ""),
        prediction_log_flush_seconds=_float(
            env, "VIGIL_PREDICTION_LOG_FLUSH_SECONDS", defaults.prediction_log_flush_seconds, 0.05),
        prediction_log_max_rows_per_second=_int(
            env, "VIGIL_PREDICTION_LOG_MAX_ROWS_PER_SECOND", defaults.prediction_log_max_rows_per_second),
        prediction_log_retention_days=_int(
            env, "VIGIL_PREDICTION_LOG_RETENTION_DAYS", defaults.prediction_log_retention_days, 1),
        actor=_env(env, "VIGIL_ACTOR", ""),
        gate_metric=_env(env, "VIGIL_GATE_METRIC", ""),
        gate_tolerance=_float(env, "VIGIL_GATE_TOLERANCE", defaults.gate_tolerance),
        rollback_margin=_float(env, "VIGIL_ROLLBACK_MARGIN", defaults.rollback_margin),
        rollback_windows=_int(env, "VIGIL_ROLLBACK_WINDOWS", defaults.rollback_windows, 1),
        rollback_min_labels=_int(env, "VIGIL_ROLLBACK_MIN_LABELS", defaults.rollback_min_labels, 1),
        rollback_cooldown_seconds=_int(env, "VIGIL_ROLLBACK_COOLDOWN_SECONDS", defaults.rollback_cooldown_seconds),
        auto_move_period_seconds=_int(env, "VIGIL_AUTO_MOVE_PERIOD_SECONDS", defaults.auto_move_period_seconds),
        rollback_dry_run=_bool(env, "VIGIL_ROLLBACK_DRY_RUN", defaults.rollback_dry_run),
        retrain_windows=_int(env, "VIGIL_RETRAIN_WINDOWS", defaults.retrain_windows, 1),
        retrain_debounce_seconds=_int(env, "VIGIL_RETRAIN_DEBOUNCE_SECONDS", defaults.retrain_debounce_seconds),
        retrain_data=_env(env, "VIGIL_RETRAIN_DATA", ""),
        retrain_action=_choice(env, "VIGIL_RETRAIN_ACTION", defaults.retrain_action, ("local", "webhook")),
        retrain_webhook_url=_env(env, "VIGIL_RETRAIN_WEBHOOK_URL", ""),
        retrain_webhook_secret=_env(env, "VIGIL_RETRAIN_WEBHOOK_SECRET", ""),
        retrain_webhook_header=_env(env, "VIGIL_RETRAIN_WEBHOOK_HEADER", defaults.retrain_webhook_header),
        retrain_webhook_style=_choice(env, "VIGIL_RETRAIN_WEBHOOK_STYLE", defaults.retrain_webhook_style, ("generic", "github")),
        retrain_webhook_ref=_env(env, "VIGIL_RETRAIN_WEBHOOK_REF", defaults.retrain_webhook_ref),
        auto_promote=_bool(env, "VIGIL_AUTO_PROMOTE", defaults.auto_promote),
        lifecycle_poll_seconds=_float(env, "VIGIL_LIFECYCLE_POLL_SECONDS", defaults.lifecycle_poll_seconds, 0.1),
        lifecycle_worker=_bool(env, "VIGIL_LIFECYCLE_WORKER", defaults.lifecycle_worker),
    )


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
    # the service has a cached model to fall back on (vigil/serving/source.py).
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
