"""The demo's processes: monitor (hosting the lifecycle worker), service, Prometheus.

`Stack` starts them on free ports with the demo's settings, knows which model version
the service answers with, and can wait for the service to follow the champion alias.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import requests
import yaml

from vigil import config
from vigil.config import Settings
from vigil.procs import free_port, running
from vigil.paths import PROJECT_ROOT

PROMETHEUS_CONFIG = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"


def hot_swap_available() -> bool:
    """Whether this build's service follows the champion alias live (serving/swap/reload.py)."""
    return importlib.util.find_spec("serving.swap.reload") is not None


def with_fast_reload(settings: Settings, seconds: float) -> Settings:
    """Set the service's alias polling interval, if this build has the setting."""
    names = {f.name for f in dataclasses.fields(settings)}
    return config.replace(settings, reload_interval_seconds=seconds) if "reload_interval_seconds" in names else settings


@dataclass
class Stack:
    """Running demo processes and their URLs."""

    settings: Settings
    base: str
    monitor_url: str
    logs: Path
    prometheus_url: str | None = None
    restarts: int = 0
    _exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _service: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start_service(self) -> None:
        from serving.launch import serve_command

        port = int(self.base.rsplit(":", 1)[1])
        argv, env = serve_command(self.settings, port=port)
        self._service.enter_context(running(argv, env, f"{self.base}/readyz", self.logs / "demo-serve.log"))

    def restart_service(self) -> None:
        """Stop and start the service (only for builds without the hot swap)."""
        self._service.close()
        self._service = contextlib.ExitStack()
        self.start_service()
        self.restarts += 1

    def served_version(self) -> str:
        return str(requests.get(f"{self.base}/metadata", timeout=5).json()["model"]["version"])

    def follow_champion(self, version: str, timeout: float) -> bool:
        """Wait until the service answers with `version`; True if it swapped live, False if restarted."""
        if not hot_swap_available():
            self.restart_service()
            return False
        deadline = time.monotonic() + timeout
        while self.served_version() != version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service still serves v{self.served_version()} {timeout:.0f}s after the "
                                   f"champion moved to v{version}; see {self.logs / 'demo-serve.log'}")
            time.sleep(0.2)
        return True


@contextlib.contextmanager
def start_stack(settings: Settings, prometheus: bool = True) -> Iterator[Stack]:
    """Monitor + service (on the settings' model, e.g. models:/iris@champion) [+ Prometheus]."""
    port, monitor_port = free_port(), free_port()
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    settings = config.replace(settings, monitor_url=monitor_url, monitor_port=monitor_port, port=port, grpc_port=0)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings, f"http://127.0.0.1:{port}", monitor_url, logs)

    monitor_env = {**config.process_env(settings), **config.to_env(settings)}
    monitor_argv = [sys.executable, "-m", "monitor", "--port", str(monitor_port)]
    with stack._exits:
        stack._exits.enter_context(running(monitor_argv, monitor_env, f"{monitor_url}/healthz", logs / "demo-monitor.log"))
        stack.start_service()
        stack._exits.callback(lambda: stack._service.close())
        if prometheus and shutil.which("prometheus"):
            stack.prometheus_url = stack._exits.enter_context(_prometheus(settings, stack))
        yield stack


@contextlib.contextmanager
def _prometheus(settings: Settings, stack: Stack) -> Iterator[str]:
    """A real Prometheus on deploy/prometheus/prometheus.yml, pointed at the demo's ports."""
    folder = settings.home / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    cfg["global"].update(scrape_interval="2s", evaluation_interval="2s")
    cfg["rule_files"] = [str(PROMETHEUS_CONFIG.parent / "rules" / "*.yml")]
    cfg.pop("alerting", None)  # no Alertmanager in the demo: the monitor's own worker acts
    targets = {"vigil-service": stack.base, "vigil-monitor": stack.monitor_url}
    for job in cfg["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]].split("//")[1]]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with running(argv, config.process_env(settings), f"{url}/-/ready", stack.logs / "demo-prometheus.log",
                 timeout=30):
        yield url


def target_health(prometheus_url: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Each active target's job, URL, health and last error, once all have been scraped (or timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        active = requests.get(f"{prometheus_url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        if (active and all(t["health"] != "unknown" for t in active)) or time.monotonic() > deadline:
            return [{"job": t["labels"].get("job"), "url": t["scrapeUrl"], "health": t["health"],
                     "error": t.get("lastError", "")} for t in active]
        time.sleep(0.5)
