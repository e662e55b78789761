"""`vigil demo` / `make demo`: the whole loop on embedded defaults, narrated as it happens.

train iris v1 → convert (parity) → promote to production → start the monitor (hosting
the lifecycle worker), a real `bentoml serve` on models:/iris@champion and Prometheus →
a few predictions → the lifecycle loop (demo/loop.py: drift → retraining → v2 →
hot swap → bad v3 forced → quality drop → automatic rollback) → the prediction log
(`vigil log stats`) and the business KPIs of the served version → Prometheus targets'
health, and a closing note on swaps and failures.

Windows, polls and cooldowns are seconds here (minutes by default) so the story fits in
a few minutes; every one is a VIGIL_* setting.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from vigil import config
from vigil.auth import predict_headers
from vigil.config import Settings
from demo.loop import DemoError, LoopResult, run_loop
from demo.stack import Stack, hot_swap_available, start_stack, target_health, with_fast_reload
from demo.traffic import load_iris_data, shifted_frame

NAME = "iris"
GRAFANA_HINT = ("Grafana: add Prometheus as a data source and import deploy/grafana/dashboards/*.json; "
                "Prometheus: prometheus --config.file=deploy/prometheus/prometheus.yml (deploy/README.md)")


# The SIGTERM the demo received, if any. The handler raises SystemExit, but an exception
# raised by a signal handler can be swallowed where the signal lands (a __del__, a
# library's broad `except`); CI saw a terminated demo run on and exit 0. So every
# narrated line checks again, and the exit code says the demo was stopped.
_terminated: list[int] = []


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    _terminated.append(signum)
    raise SystemExit(128 + signum)


def _raise_if_terminated() -> None:
    if _terminated:
        raise SystemExit(128 + _terminated[0])


def _step(text: str) -> None:
    _raise_if_terminated()
    print(f"\n==> {text}", flush=True)


def _say(text: str) -> None:
    _raise_if_terminated()
    print(f"    {text}", flush=True)


def demo_settings(settings: Settings, window_seconds: int = 3) -> Settings:
    """The demo's short windows, polls and guard rails (each is a VIGIL_* setting)."""
    log = settings.prediction_log_dir
    settings = config.replace(
        settings, model=f"models:/{NAME}@champion", monitor_window_seconds=window_seconds,
        # One absolute log folder for both writers (the service's agent runs with cwd = the
        # project root, the monitor wherever the demo started), flushed often enough that
        # the closing stats include the last seconds of traffic.
        prediction_log="off" if log is None else str(log), prediction_log_flush_seconds=1.0,
        lifecycle_poll_seconds=0.5, lifecycle_worker=True,
        retrain_windows=2, retrain_debounce_seconds=3600, auto_promote=True, retrain_action="local",
        retrain_data=str(settings.home / "recent" / "labelled.csv"),
        # The demo's drift changes the answers (shifted inputs keep their old labels): the
        # evaluation set moves to held-out recent rows and v1 is re-scored on them.
        retrain_refresh_holdout=True,
        rollback_windows=2, rollback_min_labels=20, rollback_margin=0.1,
        rollback_cooldown_seconds=4 * window_seconds, auto_move_period_seconds=3600, rollback_dry_run=False,
    )
    return with_fast_reload(settings, 1.0)


def run_demo(settings: Settings, requests_count: int = 200, window_seconds: int = 3) -> int:
    """Run the demo end to end; returns the exit code (1 if the story broke, with why)."""
    settings = demo_settings(settings, window_seconds)
    print(f"VIGIL_HOME={settings.home}  MLflow: {settings.mlflow_uri}")
    # A SIGTERM (a timeout, a CI cancel) unwinds like Ctrl+C, so every `with` below stops
    # the processes it started (service, monitor, Prometheus) instead of orphaning them.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        _first_champion(settings)
        with start_stack(settings) as stack:
            _step(f"monitor {stack.monitor_url} (lifecycle worker on) + vigil serve --model {settings.model_uri} "
                  f"on {stack.base}" + (f" + prometheus {stack.prometheus_url}" if stack.prometheus_url else ""))
            _first_requests(stack, requests_count)
            result = run_loop(stack.settings, stack, load_iris_data(), NAME, _say, _step)
            _metrics_excerpt(stack)
            _prediction_log(stack)
            _prometheus_targets(stack)
            from monitor import write_report

            report = write_report(stack.settings, settings.home / "report.html")
    except DemoError as exc:
        print(f"\ndemo stopped: {exc}", flush=True)
        return 1
    _closing(result, report)
    _raise_if_terminated()
    return 0 if result.failures == 0 else 1


def _first_champion(settings: Settings) -> None:
    from converter import convert_version
    from lifecycle import train
    from lifecycle.moves import promote

    _step(f"vigil train --dataset {NAME}")
    result = train(settings, dataset=NAME)
    print(result.summary)
    _step(f"vigil convert {NAME} --version {result.version}")
    print(convert_version(settings, f"models:/{NAME}/{result.version}", progress=False).summary())
    _step(f"vigil promote {NAME} {result.version} --to production")
    print(promote(settings, NAME, result.version, "production", reason="demo: first champion").describe())
    # Where recent labelled data lands for retraining (VIGIL_RETRAIN_DATA): here, the post-drift rows.
    recent = settings.home / "recent" / "labelled.csv"
    recent.parent.mkdir(parents=True, exist_ok=True)
    shifted_frame(load_iris_data()).to_csv(recent, index=False)
    print(f"recent labelled data for retraining: {recent}")


def _first_requests(stack: Stack, count: int) -> None:
    base = stack.base
    meta = requests.get(f"{base}/metadata", timeout=5).json()
    print(f"serving {meta['model']['name']} v{meta['model']['version']} "
          f"({'hot swap on: follows @champion' if hot_swap_available() else 'no hot swap in this build'})")
    sample = [5.1, 3.5, 1.4, 0.2]
    auth = predict_headers(stack.settings)  # {} unless VIGIL_PREDICT_TOKEN(_FILE) is set
    answer = requests.post(f"{base}/predict", json={"instances": [sample]}, headers=auth, timeout=5).json()
    print(f"sample {sample} -> prediction {answer['predictions'][0]}, request id {answer['request_ids'][0]}")
    bad = requests.post(f"{base}/predict", json={"instances": [[1.0, 2.0]]}, headers=auth, timeout=5)
    print(f"bad input -> HTTP {bad.status_code}: {bad.json()['error']['message']}")
    latencies = _burst(f"{base}/predict", count, auth)
    ordered = sorted(latencies)
    print(f"{count} predictions from 8 clients: p50 {ordered[len(ordered) // 2] * 1e3:.1f} ms, "
          f"p99 {ordered[int(0.99 * (len(ordered) - 1))] * 1e3:.1f} ms")


def _burst(url: str, count: int, headers: dict[str, str], concurrency: int = 8) -> list[float]:
    rows = load_iris_data().X.tolist()
    local = threading.local()

    def one(i: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        session.post(url, json={"instances": [rows[i % len(rows)]]}, headers=headers, timeout=10).raise_for_status()
        return time.perf_counter() - start

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def _metrics_excerpt(stack: Stack) -> None:
    _step("/metrics excerpt (service)")
    for line in requests.get(f"{stack.base}/metrics", timeout=5).text.splitlines():
        if line.startswith(("vigil_predictions_total", "vigil_model_info", "vigil_model_swap")):
            _say(line)


def _prediction_log(stack: Stack) -> None:
    """`vigil log stats` on the demo's log, then the monitor's business KPIs for the served version."""
    from demo.kpis import kpi_lines, log_stats_lines, monitor_kpis

    root = stack.settings.prediction_log_dir
    if root is None:
        print("prediction log: off (VIGIL_PREDICTION_LOG=off)")
    else:
        time.sleep(stack.settings.prediction_log_flush_seconds + 1.0)  # the agent's last flush
        _step(f"vigil log stats {NAME}  (rows by the service's agent, labels by the monitor, in {root})")
        for line in log_stats_lines(root, NAME):
            _say(line)
    version = stack.served_version()
    _step(f"business KPIs of the served version v{version} (monitor /metrics, vigil_monitor_kpi_*; "
          f"labels carry outcome = prediction accepted, value = revenue)")
    for line in kpi_lines(monitor_kpis(stack.monitor_url), NAME, version):
        _say(line)


def _prometheus_targets(stack: Stack) -> None:
    if stack.prometheus_url is None:
        print("prometheus: not installed (apt-get install prometheus); skipped the scrape check")
        return
    _step(f"Prometheus targets ({stack.prometheus_url}/api/v1/targets)")
    for target in target_health(stack.prometheus_url):
        error = f" ({target['error']})" if target["error"] else ""
        _say(f"{target['job']:14s} {target['url']:40s} health={target['health']}{error}")
    print(GRAFANA_HINT)


def _closing(result: LoopResult, report: Any) -> None:
    _step("closing note")
    for swap in result.swaps:
        how = "hot swap" if swap.live else "restart"
        _say(f"-> v{swap.to_version}: {how} {swap.seconds:.1f}s after the alias moved, "
             f"{swap.requests} requests served during it, {swap.failures} failed")
    during = sum(s.requests for s in result.swaps)
    failed = sum(s.failures for s in result.swaps)
    print(f"loop: retrained v{result.retrained} ({result.retrain_triggers} retraining trigger), forced v{result.forced}, "
          f"rolled back to v{result.rolled_back_to}")
    print(f"swaps: {len(result.swaps)}, requests during swaps: {during}, failures during swaps: {failed}; "
          f"whole loop: {result.requests} requests, {result.failures} failed")
    print(f"drift report: {report}")
