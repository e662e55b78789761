"""Live hot swap: follow a registry alias (models:/NAME@ALIAS) and swap models in place.

Each worker runs one `Reloader` thread. Every VIGIL_RELOAD_INTERVAL_SECONDS — or at
once when an MLflow webhook (`model_version_alias.created`) arrives — it resolves the
alias; when the alias points at a new version it downloads the ONNX folder, loads and
warms it in this thread, then asks the Runtime to install it (one reference assignment
on the event loop). The registry, downloads and ONNX Runtime's session build never run
on the event loop, so requests keep flowing while a new version loads.

A version that cannot be served (not servable, download fails, ONNX Runtime refuses it,
warm-up fails) leaves the old one serving, is counted in
vigil_model_swap_failures_total{reason} and is not retried for `RETRY_FAILED_S`. An
unreachable registry is counted on every failed poll but logged once per outage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from vigil import artifacts
from vigil.auth import UNAUTHORIZED, check_bearer, refusal
from vigil.config import Settings
from vigil.registry import ModelRef
from serving.bundle import ServingModel, WarmUpError, load_bundle
from serving.errors import RequestError, Unauthorized
from serving.model import ModelLoadError
from serving.source import SourceError, download

log = logging.getLogger("bentoml.vigil")

RETRY_FAILED_S = 60.0  # a version that failed to load is tried again after this long
WEBHOOK_MAX_AGE_S = 300  # reject signed deliveries older than this (replay protection)
# MLflow 3 webhook headers and signature scheme (mlflow/webhooks/delivery.py):
# base64(HMAC-SHA256(secret, f"{delivery_id}.{timestamp}.{body}")), sent as "v1,<b64>".
SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
ALIAS_CREATED = "model_version_alias.created"
WEBHOOK_PATH = "/v1/webhooks/mlflow"

Install = Callable[[ServingModel], None]
Failed = Callable[[str], None]


class SwapFailed(Exception):
    """One version could not be made servable; `reason` labels the failure metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Conflict(RequestError):
    status = 409


def follows_alias(settings: Settings, packed: bool) -> ModelRef | None:
    """The alias this worker should follow, or None (a pinned version, a folder, a bento without VIGIL_MODEL)."""
    spec = settings.model_uri
    if (packed and not settings.model.strip()) or not spec.startswith("models:/"):
        return None
    ref = ModelRef.parse(spec)
    return ref if ref.alias else None


class Reloader:
    """Polls one alias in a daemon thread and installs new versions through `install`."""

    def __init__(
        self, settings: Settings, ref: ModelRef, current: Callable[[], ServingModel], install: Install, failed: Failed,
        health: Callable[[str | None], None] | None = None,
    ) -> None:
        self.settings, self.ref = settings, ref
        self._health = health or (lambda problem: None)  # None = registry answered, else why not
        self.interval = settings.reload_interval_seconds
        self._current, self._install, self._failed_metric = current, install, failed
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._registry_down = False
        self.failed: dict[str, tuple[str, float]] = {}  # version -> (reason, when)
        self.checks = 0
        self.last_check: float | None = None
        self.last_swap: dict[str, Any] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-reload", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """Check the alias now (webhook) instead of waiting for the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval if self.interval > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # the thread must survive anything; serving goes on regardless
                log.exception("vigil: unexpected error while checking %s", self.ref)

    def check(self) -> str | None:
        """Resolve the alias once; load and install a new version. Returns the version swapped to."""
        self.checks += 1
        self.last_check = time.time()
        resolved = self._resolve()
        if resolved is None:
            return None
        version, tags = str(resolved.version), resolved.tags or {}
        if version == self._current().version or self._recently_failed(version):
            return None
        try:
            self._swap_to(version, tags)
        except SwapFailed as exc:
            self.failed[version] = (exc.reason, time.monotonic())
            self._failed_metric(exc.reason)
            log.error("vigil: %s moved to v%s but it cannot be served (%s): %s; still serving v%s",
                      self.ref, version, exc.reason, exc, self._current().version)
            return None
        return version

    def _resolve(self) -> Any:
        """The ModelVersion the alias points at now; None (counted, logged once) if the registry fails."""
        from vigil.registry import connect, resolve_version

        try:
            if self._client is None:
                self._client = connect(self.settings)
            version = resolve_version(self._client, self.ref)
        except Exception as exc:  # RegistryError, SQLAlchemy/HTTP errors: all mean "keep serving"
            self._failed_metric("registry")
            self._health(f"registry unreachable at {self.settings.mlflow_uri}: {_one_line(exc)}")
            if not self._registry_down:
                self._registry_down = True
                log.warning("vigil: cannot resolve %s in the registry (%s); keeping v%s and retrying every %.1f s",
                            self.ref, _one_line(exc), self._current().version, self.interval)
            return None
        self._health(None)
        if self._registry_down:
            self._registry_down = False
            log.info("vigil: registry reachable again; %s is v%s", self.ref, version.version)
        return version

    def _recently_failed(self, version: str) -> bool:
        failure = self.failed.get(version)
        return failure is not None and time.monotonic() - failure[1] < RETRY_FAILED_S

    def _swap_to(self, version: str, tags: Mapping[str, str]) -> None:
        old = self._current().version
        started = time.perf_counter()
        if tags.get(artifacts.TAG_SERVABLE) != "true":
            why = tags.get(artifacts.TAG_SERVABLE_REASON) or "it has not been converted (run `vigil convert`)"
            raise SwapFailed("not_servable", f"{self.ref.name} version {version} is not servable: {why}")
        try:
            folder = download(self.settings, ModelRef(self.ref.name, version=version))
        except SourceError as exc:
            raise SwapFailed("download", str(exc)) from None
        fetched = time.perf_counter()
        try:
            bundle = load_bundle(self.settings, folder)
        except ModelLoadError as exc:
            raise SwapFailed("load", str(exc)) from None
        except WarmUpError as exc:
            raise SwapFailed("warm", str(exc)) from None
        if bundle.name != self.ref.name:
            raise SwapFailed("load", f"schema.json names model {bundle.name!r}, not {self.ref.name!r}")
        loaded = time.perf_counter()
        self._install(bundle)
        done = time.perf_counter()
        self.last_swap = {"from": old, "to": version, "at": time.time(), "download_ms": (fetched - started) * 1e3,
                          "load_ms": (loaded - fetched) * 1e3, "install_ms": (done - loaded) * 1e3}
        log.info("vigil: %s moved v%s -> v%s: swapped in %.0f ms (download %.0f ms, load+warm %.0f ms)",
                 self.ref, old, version, (done - started) * 1e3, (fetched - started) * 1e3, (loaded - fetched) * 1e3)

    def status(self) -> dict[str, Any]:
        """What /metadata reports under "reload"."""
        return {
            "following": str(self.ref),
            "interval_s": self.interval,
            "checks": self.checks,
            "last_check": self.last_check,
            "registry_reachable": not self._registry_down,
            "last_swap": self.last_swap,
            "failed_versions": {v: reason for v, (reason, _) in list(self.failed.items())},  # list(): other thread
        }


@dataclass(frozen=True)
class WebhookVerdict:
    """What the webhook route answers; `check` = trigger an immediate alias check."""

    check: bool
    event: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.check, "event": self.event, "detail": self.detail}


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str], now: float | None = None) -> None:
    """Check an MLflow 3 webhook signature; raise Unauthorized naming what is wrong."""
    signature = headers.get(SIGNATURE_HEADER, "")
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    delivery = headers.get(DELIVERY_HEADER, "")
    if not (signature and timestamp and delivery):
        raise Unauthorized("missing_signature", "webhook is not signed: X-MLflow-Signature, X-MLflow-Timestamp "
                                                "and X-MLflow-Delivery-Id are required (a secret is configured)")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > WEBHOOK_MAX_AGE_S:
        raise Unauthorized("stale_webhook", f"X-MLflow-Timestamp {timestamp!r} is not within "
                                            f"{WEBHOOK_MAX_AGE_S} s of now")
    signed = f"{delivery}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        raise Unauthorized("bad_signature", "X-MLflow-Signature does not match the body and the configured secret")


def authorize_webhook(body: bytes, headers: Mapping[str, str], token: bytes | None, secret: str) -> str:
    """With an API token set, a delivery needs the bearer token or a valid MLflow signature.

    MLflow 3 webhooks cannot send custom headers, only sign with VIGIL_RELOAD_WEBHOOK_SECRET,
    so either proof is enough. Returns the secret `read_webhook` still has to verify ("" once
    this check settled it); raises Unauthorized (reason "unauthorized") when neither holds.
    """
    if token is None:
        return secret
    if check_bearer(headers.get("authorization"), token):
        return ""
    if not secret:
        raise Unauthorized(UNAUTHORIZED, refusal(WEBHOOK_PATH))
    try:
        verify_signature(secret, body, headers)
    except Unauthorized as exc:
        raise Unauthorized(UNAUTHORIZED, f"{refusal(WEBHOOK_PATH)} and no valid MLflow signature ({exc.message})") from None
    return ""


def read_webhook(body: bytes, headers: Mapping[str, str], secret: str, ref: ModelRef | None) -> WebhookVerdict:
    """Verify and interpret one MLflow webhook delivery (payload: entity, action, data)."""
    if ref is None:
        raise Conflict("not_following_alias", "this server serves a fixed model, not a models:/NAME@ALIAS "
                                              "alias, so there is nothing to reload")
    if secret:
        verify_signature(secret, body, headers)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError("invalid_json", "webhook body is not valid JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise RequestError("bad_webhook", 'webhook body must be an object with "entity", "action" and "data"')
    event = f"{payload.get('entity')}.{payload.get('action')}"
    data = payload["data"]
    if event != ALIAS_CREATED:
        return WebhookVerdict(False, event, f"only {ALIAS_CREATED} triggers a reload")
    if data.get("name") != ref.name or data.get("alias") != ref.alias:
        return WebhookVerdict(False, event, f"about {data.get('name')}@{data.get('alias')}, this server follows {ref}")
    return WebhookVerdict(True, event, f"checking {ref} (webhook says v{data.get('version')})")


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
