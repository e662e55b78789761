"""Where a gRPC call's time goes: Vigil's unary and streaming paths next to bare grpcio, one run.

    python -m loadtest.grpc_profile [--seconds 5] [--rounds 3] [--concurrency 64] [--no-profile]

Starts Vigil (one worker, gRPC on) and the bare-grpcio ceiling (loadtest/peers/bare_grpc.py),
both pinned to core 0, loads them in turns with h2load on core 1 (unary ModelInfer, then
ModelStreamInfer, and Vigil's HTTP /predict with wrk; `--rounds` times, medians printed),
then HTTP and gRPC at once (batches by the protocols they held), and, unless
`--no-profile`, samples Vigil's worker during one more unary and one more streaming run
with `py-spy --gil` (only the thread holding the GIL: the Python work that serializes the
calls), printing the share of samples per function group. Figures for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from loadtest.bench import LOAD_CPU, started
from loadtest.grpc_load import STREAM_MESSAGES, run_grpc_load, run_grpc_stream_load
from loadtest.servers import VIGIL_GRPC, Server, bare_grpc_server, prepare_models, vigil_server
from loadtest.wrk import LoadResult, run_wrk
from vigil import config
from vigil.procs import free_port

# Function groups for the breakdown: the first pattern found in a sample's stack names it.
GROUPS = [
    ("onnxruntime", "ONNX Runtime (model)"),
    ("_release (serving/oip/grpc_calls.py", "thread wake-ups"),  # waking the gRPC thread that waits
    ("InferCall.wait", "thread wake-ups"),
    ("_read.<locals>.done", "thread wake-ups"),  # waking the stream's writer
    ("serving/validation.py", "validation"),
    ("grpc_wire.py", "tensor decode / response build"),
    ("serving/batcher.py", "batcher"),
    ("prometheus_client", "metrics"),
    ("serving/oip", "OIP handler (admit, checks)"),
    ("serving/runtime.py", "runtime (ids, answer)"),
    ("asyncio", "event loop + thread hand-off"),
    ("concurrent/futures", "event loop + thread hand-off"),
    ("grpc/_server.py", "grpcio server (Python side)"),
    ("grpc/", "grpcio server (Python side)"),
    ("threading.py", "thread wake-ups"),
]


def breakdown(raw: Path) -> list[tuple[str, float]]:
    """Share of py-spy samples per group, from its raw (collapsed stacks) output."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        # innermost project/library frame decides (a stack reads outermost first)
        frames = stack.split(";")
        group = next((name for frame in reversed(frames) for pattern, name in GROUPS if pattern in frame), "other")
        counts[group] += int(n)
    total = sum(counts.values()) or 1
    return [(name, n / total) for name, n in counts.most_common()]


def _worker_pid(pid: int) -> int:
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return next((p.pid for p in tree if "_bentoml_impl.worker" in " ".join(p.cmdline())), pid)


def profile(pid: int, seconds: float, out: Path) -> None:
    """py-spy record --gil of `pid` for `seconds` into `out` (raw format)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    subprocess.run([spy, "record", "-p", str(pid), "--gil", "-r", "500", "-d", str(int(seconds)), "-f", "raw",
                    "-o", str(out), "--nonblocking"], check=True, capture_output=True, timeout=seconds + 60)


def mixed(server: Server, c: int, seconds: float) -> str:
    """HTTP (wrk, c/2) and gRPC unary (h2load, c/2) at once: batches by the protocols they held."""
    import re
    from concurrent.futures import ThreadPoolExecutor

    import requests

    def batches() -> dict[str, float]:
        text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        return {k: float(v) for k, v in re.findall(r'^vigil_batches_total\{protocols="([^"]+)"\} (\S+)$', text, re.M)}

    before = batches()
    with ThreadPoolExecutor(2) as pool:
        http = pool.submit(run_wrk, f"http://127.0.0.1:{server.port}{server.path}", server.body, c // 2, seconds,
                           cpu=LOAD_CPU)
        grpc = pool.submit(run_grpc_load, f"127.0.0.1:{server.grpc_port}", server.grpc_message, c // 2, seconds,
                           cpu=LOAD_CPU)
        h, g = http.result(), grpc.result()
    after = batches()
    delta = {k: int(after[k] - before.get(k, 0.0)) for k in sorted(after)}
    return (f"HTTP c={c // 2} {h.rps:,.0f} req/s + gRPC c={c // 2} {g.rps:,.0f} req/s, errors {h.errors + g.errors}; "
            f"batches by protocols: " + ", ".join(f"{k} {v:,}" for k, v in delta.items()))


def _sampled(server: Server, pid: int, kind: str, c: int, seconds: float, messages: int,
             keep: str | None) -> list[tuple[str, float]]:
    """Load `server` with `kind` calls while py-spy samples its worker; the breakdown."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.raw"
        spy = threading.Thread(target=profile, args=(_worker_pid(pid), seconds, raw))
        spy.start()
        target = f"127.0.0.1:{server.grpc_port}"
        if kind == "unary":
            run_grpc_load(target, server.grpc_message, c, seconds + 2, cpu=LOAD_CPU)
        else:
            run_grpc_stream_load(target, server.grpc_message, c, seconds + 2, cpu=LOAD_CPU, messages=messages)
        spy.join()
        if keep:
            shutil.copy(raw, f"{keep}.{kind}")
        return breakdown(raw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.grpc_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--messages", type=int, default=STREAM_MESSAGES, help="requests per streaming call")
    p.add_argument("--rounds", type=int, default=3, help="measurements of each server, in turns")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--keep", help="also keep py-spy's raw samples (collapsed stacks) as KEEP.unary / KEEP.stream")
    args = p.parse_args(argv)
    settings = config.load()
    bench = config.replace(settings, home=settings.home / "bench")
    model = prepare_models(bench, heavy=False)[0]
    log_dir = bench.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    c, s = args.concurrency, args.seconds
    servers = [bare_grpc_server(bench, model, free_port), vigil_server(bench, model, VIGIL_GRPC, free_port)]
    results: dict[tuple[str, str], list[LoadResult]] = collections.defaultdict(list)
    # Both up at once on the same core (an idle one costs nothing) and measured in turns,
    # so a noisy neighbour slows both sides of the comparison alike.
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(started(server, log_dir)) for server in servers]
        for _ in range(args.rounds):
            for server in servers:
                target, metrics = f"127.0.0.1:{server.grpc_port}", f"http://127.0.0.1:{server.port}/metrics"
                for kind in ("unary", "stream", "http") if server.name == VIGIL_GRPC else ("unary", "stream"):
                    if kind == "unary":
                        r = run_grpc_load(target, server.grpc_message, c, s, cpu=LOAD_CPU, metrics_url=metrics)
                    elif kind == "stream":
                        r = run_grpc_stream_load(target, server.grpc_message, c, s, cpu=LOAD_CPU, metrics_url=metrics,
                                                 messages=args.messages)
                    else:  # the same worker's HTTP /predict, for the streaming-vs-HTTP floor
                        r = run_wrk(f"http://127.0.0.1:{server.port}{server.path}", server.body, c, s, cpu=LOAD_CPU)
                    results[server.name, kind].append(r)
                    print(f"{server.name:12} {kind:6} c={c} {r.rps:9,.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                          f"p99 {r.p99_ms:6.2f} ms  errors {r.errors}", flush=True)
        print("medians:")
        for (name, kind), runs in results.items():
            rps = sorted(r.rps for r in runs)[len(runs) // 2]
            p99 = sorted(r.p99_ms for r in runs)[len(runs) // 2]
            print(f"  {name:12} {kind:6} {rps:9,.0f} req/s  p99 {p99:6.2f} ms  errors {sum(r.errors for r in runs)}")
        print("mixed:", mixed(servers[1], c, s))
        if not args.no_profile:
            vigil = servers[1]
            for kind in ("unary", "stream"):
                shares = _sampled(vigil, procs[1].pid, kind, c, s, args.messages, args.keep)
                print(f"{vigil.name:12} {kind}: share of GIL-holding samples")
                for name, share in shares:
                    print(f"  {share:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
