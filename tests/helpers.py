"""Plain helpers for tests that start real processes (servers, monitors, ...).

Import them from tests (`from helpers import running_server`; pytest puts tests/ on sys.path) or use the thin
fixtures in conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

import contextlib
import subprocess

from vigil.procs import ServerDied, free_port, log_tail as _tail, running, stop_process_group, wait_ready

__all__ = ["ServerDied", "free_port", "running_server", "stop_process_group", "wait_ready"]


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
