"""Live hot swap: a real `bentoml serve` on models:/iris@champion follows the alias on a
real SQLite registry — under load, with zero failed requests — and survives broken versions."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from helpers import metric as _metric, wait_for as _wait_for
from serving_models import build_iris, register_servable

from vigil.config import Settings, load, replace
from vigil.procs import free_port, running
from vigil.registry import ModelRef, connect
from serving.batcher import Batcher
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT
from serving.model import Prediction
from serving.swap.reload import Reloader, Unauthorized, read_webhook, verify_signature

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
ALIAS_EVENT = {"entity": "model_version_alias", "action": "created"}
SECRET = "hush"
INTERVAL_S = 0.5


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """iris v1 and v2 trained and converted the real way; the champion is v1."""
    from converter import convert_version
    from lifecycle import promote, train

    settings = load({"VIGIL_HOME": str(tmp_path_factory.mktemp("hot-swap"))})
    for _ in range(2):
        result = train(settings, reference_rows=50)
        convert_version(settings, f"models:/iris/{result.version}", progress=False)
    promote(settings, "iris", "1", "production")
    return settings


def _server(settings: Settings, tag: str, **env: str):
    served = load({"VIGIL_HOME": str(settings.home), "VIGIL_MODEL": "models:/iris@champion",
                   "VIGIL_GRPC_PORT": "0", "VIGIL_PROFILE_STREAM": "0", "VIGIL_PREDICTION_LOG": "off", **env})
    port = free_port()
    argv, proc_env = serve_command(served, port=port)
    proc_env["BENTOML_HOME"] = str(settings.home / f"bentoml-{tag}")  # BentoML wipes its metrics dir
    base = f"http://127.0.0.1:{port}"
    return running(argv, proc_env, f"{base}/readyz", log_path=settings.home / f"serve-{tag}.log",
                   timeout=90, cwd=PROJECT_ROOT), base



def _served_version(base: str) -> str:
    return requests.post(f"{base}/predict", json=ROW, timeout=5).json()["model"]["version"]



# -- the load loop while the alias moves 1 -> 2 -> 1 ------------------------------------------


class LoadLoop:
    """Several clients posting predictions back to back, recording every outcome."""

    def __init__(self, base: str, clients: int = 4) -> None:
        self.base, self.clients = base, clients
        self.results: list[tuple[float, str]] = []  # (received at, version or "FAIL: ...")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(f"{self.base}/predict", json=ROW, timeout=10)
                answer = response.json()
                outcome = answer["model"]["version"] if response.status_code == 200 else f"FAIL: {answer}"
            except Exception as exc:  # a connection error is a failed request too
                outcome = f"FAIL: {exc!r}"
            self.results.append((time.monotonic(), outcome))

    def __enter__(self) -> "LoadLoop":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def first(self, version: str, after: float) -> float | None:
        return next((t for t, v in list(self.results) if t >= after and v == version), None)


def _move_and_time(load_loop: LoadLoop, move, version: str) -> dict[str, float]:
    """Run `move` (moves the alias); seconds until the first response from `version`."""
    called = time.monotonic()
    move()
    returned = time.monotonic()
    _wait_for(lambda: load_loop.first(version, called) is not None, INTERVAL_S + 10, f"a v{version} response")
    seen = load_loop.first(version, called)
    assert seen is not None
    return {"from_call": seen - called, "from_alias_set": seen - returned, "move_s": returned - called}


@pytest.mark.integration
def test_alias_moves_under_load_swap_with_zero_failed_requests(registry: Settings) -> None:
    from lifecycle import promote, rollback

    server, base = _server(registry, "poll", VIGIL_RELOAD_INTERVAL_SECONDS=str(INTERVAL_S))
    with server:
        assert _served_version(base) == "1"
        with LoadLoop(base) as load_loop:
            started = time.monotonic()
            time.sleep(1.0)
            up = _move_and_time(load_loop, lambda: promote(registry, "iris", "2", "production"), "2")
            time.sleep(1.0)
            back_called = time.monotonic()
            down = _move_and_time(load_loop, lambda: rollback(registry, "iris"), "1")
            time.sleep(1.0)
        elapsed = time.monotonic() - started

        failures = [v for _, v in load_loop.results if v.startswith("FAIL")]
        versions = [v for _, v in load_loop.results]
        print(f"\nhot swap under load: {len(versions)} requests in {elapsed:.1f} s with {load_loop.clients} clients, "
              f"{len(failures)} failed; 1->2 seen {up['from_alias_set'] * 1e3:.0f} ms after the alias moved "
              f"({up['from_call'] * 1e3:.0f} ms after `promote` started), 2->1 seen "
              f"{down['from_alias_set'] * 1e3:.0f} ms after `rollback` returned")
        assert failures == [], failures[:5]
        assert len(versions) >= 500, f"only {len(versions)} requests: the load loop did not load"
        assert versions.count("2") > 50 and versions.count("1") > 50
        # The switch takes one poll (+ download and load, ~20 ms for iris).
        assert up["from_alias_set"] < INTERVAL_S + 1.5 and down["from_alias_set"] < INTERVAL_S + 1.5
        # Once v2 answered, only v2 answers until the rollback (one worker: no flapping back).
        first_v2 = load_loop.first("2", started)
        between = [v for t, v in load_loop.results if first_v2 + 0.2 < t < back_called]
        assert between and set(between) == {"2"}, sorted(set(between))

        meta = requests.get(f"{base}/metadata", timeout=5).json()
        assert meta["model"]["version"] == "1" and meta["model"]["source"] == "models:/iris/1"
        assert meta["reload"]["last_swap"]["from"] == "2" and meta["reload"]["last_swap"]["to"] == "1"
        assert _metric(base, "vigil_model_swaps_total") == 2
        assert _metric(base, "vigil_model_info", '{model="iris",version="1"}') == 1
        assert _metric(base, "vigil_model_info", '{model="iris",version="2"}') == 0
        assert _metric(base, "vigil_predictions_total", '{model="iris",outcome="ok",version="2"}') >= 200
        assert _metric(base, "vigil_model_last_swap_timestamp_seconds") > time.time() - 60


# -- webhooks and versions that cannot be served --------------------------------------------


def _signed(payload: dict, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """A delivery exactly as MLflow 3 signs it (its own signing function)."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = json.dumps(payload)
    delivery, stamp = str(uuid.uuid4()), str(int(time.time()))
    return body.encode(), {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery,
                           "X-MLflow-Timestamp": stamp,
                           "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, body)}


def _alias_event(version: str, alias: str = "champion") -> dict:
    return {**ALIAS_EVENT, "timestamp": "2025-01-01T00:00:00Z", "data": {"name": "iris", "alias": alias, "version": version}}


def _broken_version(settings: Settings, tmp: Path) -> str:
    """A version tagged servable whose model.onnx is garbage (schema.json is fine)."""
    folder = build_iris(tmp / "broken").folder
    (folder / "model.onnx").write_bytes(b"this is not an ONNX graph")
    return register_servable(settings, folder, "iris", alias=None)


@pytest.mark.integration
def test_webhook_triggers_the_swap_and_broken_versions_leave_the_old_one_serving(
    registry: Settings, tmp_path: Path
) -> None:
    client = connect(registry)
    client.set_registered_model_alias("iris", "champion", "1")
    broken = _broken_version(registry, tmp_path)
    unconverted = str(client.create_model_version("iris", tmp_path.as_uri(), run_id=None).version)
    server, base = _server(registry, "webhook", VIGIL_RELOAD_INTERVAL_SECONDS="0", VIGIL_RELOAD_WEBHOOK_SECRET=SECRET)
    hook = f"{base}/v1/webhooks/mlflow"
    with server:
        assert requests.post(hook, json=_alias_event("2"), timeout=5).json()["error"]["reason"] == "missing_signature"
        body, headers = _signed(_alias_event("2"), secret="wrong")
        assert requests.post(hook, data=body, headers=headers, timeout=5).status_code == 401

        client.set_registered_model_alias("iris", "champion", "2")
        time.sleep(1.0)
        assert _served_version(base) == "1", "polling is off: only the webhook may trigger the swap"
        body, headers = _signed(_alias_event("2", alias="challenger"))
        ignored = requests.post(hook, data=body, headers=headers, timeout=5)
        assert ignored.status_code == 200 and ignored.json()["accepted"] is False
        body, headers = _signed(_alias_event("2"))
        accepted = requests.post(hook, data=body, headers=headers, timeout=5)
        assert accepted.status_code == 202, accepted.text
        print(f"\nwebhook -> v2 served after {_wait_for(lambda: _served_version(base) == '2', 5, 'swap') * 1e3:.0f} ms")

        for version, reason in ((broken, "load"), (unconverted, "not_servable")):
            client.set_registered_model_alias("iris", "champion", version)
            body, headers = _signed(_alias_event(version))
            assert requests.post(hook, data=body, headers=headers, timeout=5).status_code == 202
            label = f'{{reason="{reason}"}}'
            _wait_for(lambda: _metric(base, "vigil_model_swap_failures_total", label) == 1, 5, f"{reason} failure")
            assert _served_version(base) == "2"
        meta = requests.get(f"{base}/metadata", timeout=5).json()
        assert meta["model"]["version"] == "2"
        assert meta["reload"]["failed_versions"] == {broken: "load", unconverted: "not_servable"}
        assert _metric(base, "vigil_model_swaps_total") == 1
        assert _metric(base, "vigil_model_info", '{model="iris",version="2"}') == 1
    client.set_registered_model_alias("iris", "champion", "1")


# -- units: signatures, unreachable registry, batches never mix models ------------------------


def test_signature_check_names_what_is_wrong() -> None:
    body, headers = _signed(_alias_event("3"))
    lowered = {k.lower(): v for k, v in headers.items()}
    verify_signature(SECRET, body, lowered)  # MLflow's own signature passes
    for tampered_body, hdrs, reason in [
        (body + b" ", lowered, "bad_signature"),
        (body, {**lowered, "x-mlflow-timestamp": str(int(time.time()) - 3600)}, "stale_webhook"),
        (body, {k: v for k, v in lowered.items() if k != "x-mlflow-signature"}, "missing_signature"),
    ]:
        with pytest.raises(Unauthorized) as caught:
            verify_signature(SECRET, tampered_body, hdrs)
        assert caught.value.reason == reason
    ref = ModelRef.parse("models:/iris@champion")
    assert read_webhook(body, lowered, SECRET, ref).check
    tag_event = json.dumps({"entity": "model_version_tag", "action": "set", "data": {"name": "iris"}}).encode()
    assert not read_webhook(tag_event, {}, "", ref).check
    with pytest.raises(Exception, match="fixed model"):
        read_webhook(body, lowered, SECRET, None)


def test_unreachable_registry_keeps_serving_counts_each_poll_logs_once(tmp_path: Path, caplog, monkeypatch) -> None:
    # A tracking server that is down (nothing listens on the port); no MLflow retries, to keep it quick.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    import mlflow

    settings = replace(load({"VIGIL_HOME": str(tmp_path)}), tracking_uri=f"http://127.0.0.1:{free_port()}")
    # connect() points this process's MLflow at the dead server: undo that for later tests.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
    tracking, registry = mlflow.tracking._tracking_service.utils, mlflow.tracking._model_registry.utils
    monkeypatch.setattr(tracking, "_tracking_uri", tracking._tracking_uri)  # restored at teardown
    monkeypatch.setattr(registry, "_registry_uri", registry._registry_uri)
    failures: list[str] = []
    installed: list[object] = []
    current = SimpleNamespace(version="1")
    reloader = Reloader(settings, ModelRef.parse("models:/iris@champion"), lambda: current,
                        installed.append, failures.append)
    with caplog.at_level(logging.WARNING, logger="bentoml.vigil"):
        assert reloader.check() is None and reloader.check() is None
    assert failures == ["registry", "registry"] and installed == []
    assert sum("cannot resolve" in r.message for r in caplog.records) == 1
    assert reloader.status()["registry_reachable"] is False


class FakeModel:
    """A model stand-in with the batcher's model protocol: predict + executor."""

    def __init__(self, offset: float) -> None:
        self.offset, self.executor, self.batches = offset, None, []

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        self.batches.append(len(inputs["X"]))
        return Prediction(inputs["X"][:, 0] + self.offset, None)


def test_batches_never_mix_models_and_report_the_serving_model() -> None:
    old, new = FakeModel(100.0), FakeModel(200.0)
    reported: list[tuple[object, int]] = []

    async def body() -> list[Prediction]:
        batcher = Batcher(max_batch_size=64, max_latency_s=0.005, max_queue_rows=100,
                          on_batch=lambda inputs, pred, ids, model: reported.append((model, len(ids))))
        batcher.start()
        try:
            models = [old, old, new, old, new, new]  # a swap racing queued requests
            return await asyncio.gather(*(
                batcher.submit({"X": np.array([[float(i)]])}, 1, [f"r{i}"], m) for i, m in enumerate(models)
            ))
        finally:
            await batcher.stop()

    results = asyncio.run(body())
    assert [r.labels[0] for r in results] == [100.0, 101.0, 202.0, 103.0, 204.0, 205.0]
    assert sum(old.batches) == 3 and sum(new.batches) == 3
    assert {id(m) for m, _ in reported} == {id(old), id(new)}
    assert sum(n for _, n in reported) == 6


def test_profiles_carry_the_version_that_served_the_batch(tmp_path: Path) -> None:
    from serving.bundle import load_bundle
    from serving.producer.feed import BatchFeed
    from serving.source import ModelFolder

    settings = load({"VIGIL_HOME": str(tmp_path)})
    built = build_iris(tmp_path / "iris", version="1")
    bundle = load_bundle(settings, ModelFolder(built.folder, "models:/iris/7", "7"))
    feed = BatchFeed(settings)  # its agent process is never started: not under test here
    inputs = {"X": np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)}
    feed(inputs, bundle.predict(inputs), ["a"], bundle)
    # a folder served without a registry version reports the schema's own
    local = load_bundle(settings, ModelFolder(built.folder, str(built.folder)))
    feed(inputs, local.predict(inputs), ["b"], local)
    assert [(b.model, b.version, b.ids()) for b in feed.take()[1]] == [("iris", "7", ["a"]), ("iris", "1", ["b"])]
