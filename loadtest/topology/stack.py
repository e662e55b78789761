"""The production topology on one machine, as processes: what the Helm chart runs, in order.

PostgreSQL → `mlflow server` (PostgreSQL backend store, artifact folder) → the first
champion (train, convert, promote) → the exported bento imported into a clean venv →
one monitor → three `bentoml serve` replicas of that bento following models:/iris@champion
→ Alertmanager (webhook: the monitor's /v1/actions/alert) → Prometheus scraping all four.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from vigil import config
from vigil.config import Settings
from vigil.procs import free_port, running
from loadtest.bento_env import CleanBento, import_bento
from loadtest.topology.alerting import alertmanager_config, prometheus_config
from loadtest.topology.postgres import postgres_cluster
from loadtest.topology.traffic import shifted

NAME = "iris"
REPLICAS = 3
RELOAD_S = 2.0  # each replica polls the alias this often (VIGIL_RELOAD_INTERVAL_SECONDS)
WINDOW_S = 2  # the monitor's window (VIGIL_MONITOR_WINDOW_SECONDS)
Say = Callable[[str], None]


@dataclass
class Topology:
    """URLs of the running processes and the settings a client of them uses."""

    folder: Path
    settings: Settings  # the registry (mlflow server), the monitor, the token
    mlflow: str
    monitor: str
    replicas: list[str]
    prometheus: str = ""
    alertmanager: str = ""
    bento: CleanBento | None = None
    logs: Path = field(default_factory=Path)


def _lifecycle(settings: Settings, recent: Path) -> Settings:
    """The monitor's lifecycle settings: the alert (not a poll) triggers the retraining.

    The drifted rows keep the labels the unshifted ones had, so the right answers moved with
    the inputs: as in the demo, the gate scores champion and candidate on held-out recent rows
    (VIGIL_RETRAIN_REFRESH_HOLDOUT), at the default tolerance.
    """
    return config.replace(
        settings, lifecycle_worker=False, retrain_windows=2, retrain_debounce_seconds=3600, auto_promote=True,
        retrain_action="local", retrain_data=str(recent), retrain_refresh_holdout=True,
        monitor_window_seconds=WINDOW_S)


def first_champion(settings: Settings, say: Say) -> str:
    """vigil train → convert → promote: v1 is models:/iris@champion in the PostgreSQL-backed registry."""
    from converter import convert_version
    from lifecycle import train
    from lifecycle.moves import promote

    result = train(settings, dataset=NAME)
    convert_version(settings, f"models:/{NAME}/{result.version}", progress=False)
    say(promote(settings, NAME, result.version, "production", reason="topology: first champion").describe())
    return result.version


def export(settings: Settings, version: str, out: Path) -> Path:
    """`vigil export` in a child process (BentoML binds its home at import)."""
    vigil = Path(sys.executable).with_name("vigil")
    env = config.process_env(settings) | config.to_env(settings) | {"BENTOML_HOME": str(settings.bentoml_home)}
    done = subprocess.run([str(vigil), "export", NAME, "--version", version, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"vigil export failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1].split(": ", 1)[1])


@contextlib.contextmanager
def start_topology(folder: Path, say: Say = print) -> Iterator[Topology]:
    """Start everything (see the module docstring); stop it all on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    token = secrets.token_urlsafe(24)
    (folder / "api-token").write_text(token)
    with contextlib.ExitStack() as stack:
        say("PostgreSQL: initdb + pg_ctl start (a throwaway cluster)")
        database = stack.enter_context(postgres_cluster(logs))
        mlflow_port = free_port()
        mlflow = f"http://127.0.0.1:{mlflow_port}"
        say(f"mlflow server --backend-store-uri {database} --artifacts-destination {folder / 'artifacts'}")
        settings = config.load({"VIGIL_HOME": str(folder / "client"), "VIGIL_TRACKING_URI": mlflow,
                                "VIGIL_API_TOKEN": token, "VIGIL_MODEL": f"models:/{NAME}@champion"})
        stack.enter_context(running(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", database,
             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(mlflow_port),
             "--workers", "2"],
            config.process_env(settings), f"{mlflow}/health", logs / "mlflow.log", timeout=120))
        say("first champion: train iris, convert (parity), promote to production")
        version = first_champion(settings, say)
        archive = export(settings, version, folder / "out")
        say(f"bento: {archive} -> a clean venv with only its requirements + an empty BENTOML_HOME")
        bento = import_bento(archive, folder / "elsewhere" / "bentoml")

        recent = folder / "recent.csv"  # the retraining's recent labelled data: post-drift rows
        shifted().to_csv(recent, index=False)
        monitor_port = free_port()
        monitor = f"http://127.0.0.1:{monitor_port}"
        shared_log = folder / "prediction-log"  # the chart's RWX volume: every replica + the monitor
        monitor_settings = _lifecycle(config.replace(settings, home=folder / "monitor", monitor_url=monitor,
                                                     monitor_port=monitor_port, prediction_log=str(shared_log)), recent)
        say(f"monitor on {monitor} (retraining on alerts, auto-promote through the gate)")
        stack.enter_context(running([sys.executable, "-m", "monitor", "--port", str(monitor_port)],
                                    config.process_env(monitor_settings) | config.to_env(monitor_settings),
                                    f"{monitor}/healthz", logs / "monitor.log", timeout=90))
        ports = [free_port() for _ in range(REPLICAS)]
        replicas = [f"http://127.0.0.1:{p}" for p in ports]
        say(f"{REPLICAS} replicas: bentoml serve {bento.tag} with VIGIL_MODEL=models:/{NAME}@champion on "
            + ", ".join(replicas))

        def replica(i: int) -> None:
            # Each replica its own BentoML home, as each pod has its own filesystem: BentoML keeps
            # the workers' Prometheus multiprocess files there, and a shared one would make every
            # replica's /metrics the sum of all three.
            home = folder / f"replica-{i}" / "bentoml"
            shutil.copytree(bento.bentoml_home, home)
            env = dataclasses.replace(bento, bentoml_home=home).env(VIGIL_HOME=str(folder / f"replica-{i}"), VIGIL_MODEL=f"models:/{NAME}@champion",
                            VIGIL_TRACKING_URI=mlflow, VIGIL_MONITOR_URL=monitor, VIGIL_API_TOKEN=token,
                            VIGIL_RELOAD_INTERVAL_SECONDS=str(RELOAD_S), VIGIL_GRPC_PORT="0",
                            VIGIL_PREDICTION_LOG=str(shared_log), VIGIL_MONITOR_WINDOW_SECONDS=str(WINDOW_S))
            stack.enter_context(running(bento.serve_argv(ports[i]), env, f"{replicas[i]}/readyz",
                                        logs / f"replica-{i}.log", timeout=180, cwd=folder / f"replica-{i}"))

        with ThreadPoolExecutor(REPLICAS) as pool:  # started together: each takes ~20 s to be ready
            list(pool.map(replica, range(REPLICAS)))
        topo = Topology(folder, monitor_settings, mlflow, monitor, replicas, bento=bento, logs=logs)
        topo.alertmanager = stack.enter_context(_alertmanager(topo, folder / "api-token"))
        topo.prometheus = stack.enter_context(_prometheus(topo))
        say(f"alertmanager {topo.alertmanager} -> {monitor}/v1/actions/alert; prometheus {topo.prometheus}")
        yield topo


@contextlib.contextmanager
def _alertmanager(topo: Topology, token_file: Path) -> Iterator[str]:
    folder = topo.folder / "alertmanager"
    folder.mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["prometheus-alertmanager", f"--config.file={alertmanager_config(folder, topo.monitor, token_file)}",
            f"--storage.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with running(argv, config.process_env(topo.settings), f"{url}/-/ready", topo.logs / "alertmanager.log", timeout=30):
        yield url


@contextlib.contextmanager
def _prometheus(topo: Topology) -> Iterator[str]:
    folder = topo.folder / "prometheus"
    folder.mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = prometheus_config(folder, topo.replicas, topo.monitor, topo.alertmanager)
    argv = ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with running(argv, config.process_env(topo.settings), f"{url}/-/ready", topo.logs / "prometheus.log", timeout=30):
        yield url
