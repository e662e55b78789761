"""Drive Debian's `wrk` (a C load generator, far faster than any Python server here) and
read its report."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}

_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""


@dataclass(frozen=True)
class LoadResult:
    """One load run: throughput, latency percentiles and failures."""

    concurrency: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + timeouts + non-2xx answers


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise ValueError(f"unexpected wrk latency {value!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse(output: str, concurrency: int, seconds: float) -> LoadResult:
    """Read wrk's `--latency` report."""
    requests = int(re.search(r"(\d+) requests in", output)[1])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M)[1])
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M)[1])
    errors = 0
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket:
        errors += sum(int(x) for x in socket.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx[1])
    return LoadResult(concurrency, seconds, requests, rps, p50, p99, errors)


def run_wrk(url: str, body: str, concurrency: int, seconds: float, cpu: int | None = 1) -> LoadResult:
    """POST `body` to `url` from `concurrency` connections for `seconds`, pinned to `cpu`."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA.format(body=body))
        # wrk reads durations as whole units only ("2.0s" is a usage error)
        argv = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "--latency", "-s", str(script), url]
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return parse(proc.stdout, concurrency, seconds)
