"""Plain helpers for tests that start real processes (servers, monitors, ...).

Import them from tests (`from helpers import running_server`; pytest puts tests/ on sys.path) or use the thin
fixtures in conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

import contextlib
import re
import subprocess
import time

import requests

from vigil.procs import ServerDied, free_port, log_tail as _tail, running, stop_process_group, wait_ready

__all__ = ["ServerDied", "free_port", "metric", "running_server", "stop_process_group", "wait_for", "wait_ready"]


@contextlib.contextmanager
def running_server(
    argv: Sequence[str],
    env: Mapping[str, str],
    ready_url: str,
    timeout: float = 60.0,
    cwd: str | Path | None = None,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """`vigil.procs.running` with the argument order the tests were written against."""
    with running(argv, env, ready_url, log_path=log_path, timeout=timeout, cwd=cwd) as proc:
        yield proc


def metric(base: str, name: str, labels: str = "") -> float:
    """One sample from a server's /metrics (`labels` verbatim, e.g. '{reason="x"}'); 0 when absent."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for(predicate, timeout: float, what: str) -> float:
    """Poll `predicate` until true; the seconds it took, or AssertionError naming `what`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def clone_home(settings, dest: Path, **changes):
    """A copy of `settings.home` (registry database and all) under `dest`, as Settings pointing at it.

    Module fixtures build a registry once (training is slow); each test then works on its
    own copy, so tests neither see nor depend on what the others did to the registry.
    Artifacts stay where the original experiment put them (read and appended, never
    rewritten), so only the database state is per test.
    """
    import shutil

    from vigil.config import replace

    shutil.copytree(settings.home, dest, symlinks=True)
    return replace(settings, home=dest.resolve(), **changes)
