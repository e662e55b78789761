"""Starting and stopping the local processes Vigil runs (servers, monitor) and tests use."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import requests

from vigil.paths import PROJECT_ROOT


class ServerDied(RuntimeError):
    """The process exited before it became ready."""


# Ports handed out below the kernel's ephemeral range (32768-60999 on Linux): a port from
# there can be taken, between our check and the server's bind, by any outgoing
# connection's local port (load generators open thousands), which a port from bind(0) is.
_PORTS = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and was not handed out before by this process."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS[0]}-{_PORTS[1]}")


def log_tail(log: Path, chars: int = 6000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float, log: Path, verify: bool | str = True) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it dies or times out.

    `verify` is requests' TLS check for an https `url`: a CA bundle path
    (`Settings.tls_verify` gives VIGIL_TLS_CA_FILE) or True for the system store.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerDied(f"server exited with code {proc.returncode} before ready:\n{log_tail(log)}")
        try:
            status = requests.get(url, timeout=1, verify=verify).status_code
            if status == 200:
                return
            last = f"HTTP {status}"
        except requests.RequestException as exc:
            last = str(exc)  # e.g. a TLS verification failure, worth showing on timeout
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s (last: {last}):\n{log_tail(log)}")


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group the child leads, then SIGKILL whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Workers may outlive the leader: kill the whole group regardless.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(2)


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    env: Mapping[str, str],
    ready_url: str,
    log_path: Path | None = None,
    timeout: float = 90.0,
    cwd: str | Path | None = PROJECT_ROOT,
    verify: bool | str = True,
) -> Iterator[subprocess.Popen]:
    """Start `argv` in its own process group, wait for `ready_url`, stop the group at exit.

    stdout+stderr go to `log_path` (a temp file by default); if the start fails or the
    body of the `with` raises, the log's tail is written to stderr.
    """
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="vigil-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc.log_path = log_path  # type: ignore[attr-defined]  # for callers that read the log
    try:
        wait_ready(ready_url, proc, timeout, log_path, verify)
        yield proc
    except BaseException:
        sys.stderr.write(f"\n--- process log ({log_path}) ---\n{log_tail(log_path)}\n")
        raise
    finally:
        stop_process_group(proc)


@contextlib.contextmanager
def stopped(pids: Sequence[int]) -> Iterator[None]:
    """SIGSTOP these processes and all their children for the block; SIGCONT them after, whatever
    happens. For side-by-side measurements: the side not being measured takes no CPU at all."""
    import psutil

    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.suspend()
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()
