"""`vigil`: the one command that fronts the whole workflow.

Each subcommand is a thin shell around a plain Python function in its package; heavy
libraries (mlflow, bentoml, onnxruntime) are imported only by the subcommand that
needs them, so `vigil --help` answers instantly.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from vigil import config

DESCRIPTION = """\
Vigil: model serving that is fast and watches itself.

scikit-learn models registered in MLflow are converted to ONNX (with a parity proof),
served by a BentoML service with adaptive batching, and monitored for drift and quality.
Everything runs on embedded defaults: an MLflow registry on SQLite under $VIGIL_HOME
(default ./.vigil), local processes, no servers to set up.
"""

EPILOG = """\
a typical session:
  vigil train --dataset iris                  # train, log to MLflow, register iris v1
  vigil convert iris --version 1              # ONNX + parity report onto iris v1
  vigil serve --model models:/iris/1          # BentoML service on http://127.0.0.1:3000
  curl -s localhost:3000/predict -H 'content-type: application/json' \\
       -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
  vigil export iris --version 1               # bento archive under bentos/
  vigil demo                                  # all of the above, end to end

settings come from VIGIL_* environment variables (see README.md); run
`vigil config` to print the values in force.
"""


class UserError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def _settings() -> config.Settings:
    try:
        return config.load()
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _ref(name: str, version: str | None, alias: str | None):
    from vigil.registry import ModelRef

    if (version is None) == (alias is None):
        raise UserError("give exactly one of --version N or --alias A")
    return ModelRef(name=name, version=version, alias=alias)


# --- subcommands -----------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings()
    secret = {f.name for f in dataclasses.fields(settings) if not f.repr}  # tokens and webhook secrets
    for name, value in sorted(vars(settings).items()):
        print(f"{name:22} {'(set)' if name in secret and value else value}")
    print(f"{'mlflow_uri':22} {settings.mlflow_uri}")
    print(f"{'batch_latency_ms':22} {settings.batch_latency_ms}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from lifecycle import TrainError, train

    settings = _settings()
    try:
        result = train(
            settings,
            dataset=args.dataset,
            csv=Path(args.csv) if args.csv else None,
            target=args.target,
            name=args.name,
            estimator=args.estimator,
            test_size=args.test_size,
            seed=args.seed,
            task=args.task,
            params=dict(_key_value(p) for p in args.param),
        )
    except TrainError as exc:
        raise UserError(str(exc)) from None
    print(f"registered {result.name} version {result.version} (run {result.run_id})")
    print(result.summary)
    return 0


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--param takes KEY=VALUE, got {text!r}")
    return key, value


def cmd_convert(args: argparse.Namespace) -> int:
    from converter import ConversionError, convert_version
    from vigil.registry import RegistryError

    settings = _settings()
    try:
        report = convert_version(settings, _ref(args.name, args.version, args.alias), progress=not args.quiet)
    except (ConversionError, RegistryError) as exc:
        raise UserError(str(exc)) from None
    print(report.summary())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vigil.serving.launch import serve_command

    from vigil.serving.source import SourceError, locate

    settings = _settings()
    if args.model:
        settings = config.replace(settings, model=args.model)
    try:
        folder = locate(settings)  # fail here, in one line, rather than in every worker
    except SourceError as exc:
        raise UserError(str(exc)) from None
    print(f"model files: {folder.path}")
    argv, env = serve_command(settings, port=args.port, workers=args.workers)
    print(f"serving {settings.model} on {settings.scheme}://{settings.host}:{args.port or settings.port}", flush=True)
    # Replace this process with the server so signals (Ctrl+C, SIGTERM) reach it directly.
    os.chdir(_project_root())
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def cmd_export(args: argparse.Namespace) -> int:
    from vigil.registry import RegistryError
    from vigil.serving.bento import ExportError, export_bento
    from vigil.serving.source import SourceError

    settings = _settings()
    try:
        path = export_bento(settings, _ref(args.name, args.version, args.alias), Path(args.out))
    except (ExportError, SourceError, RegistryError) as exc:
        raise UserError(str(exc)) from None
    print(f"bento archive: {path}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from monitor import run_monitor

    run_monitor(_settings(), port=args.port)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from monitor import write_report

    try:
        path = write_report(_settings(), Path(args.out), model=args.model)
    except (FileNotFoundError, PermissionError) as exc:  # no monitor and no state; a refused API token
        raise UserError(str(exc)) from None
    print(f"drift report: {path}")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from loadtest.gate import LoadtestError, run_loadtest

    settings = _settings()
    host = args.host or f"{settings.scheme}://{settings.host}:{settings.port}"
    try:
        verdict = run_loadtest(settings, host, Path(args.slo), Path(args.out), users=args.users,
                               duration=args.duration, web=args.web)
    except LoadtestError as exc:
        raise UserError(str(exc)) from None
    return verdict.exit_code


def cmd_bench(args: argparse.Namespace) -> int:
    from loadtest.bench import run_bench

    flags = [f"--{name}" for name in ("smoke", "memory", "overload") if getattr(args, name)]
    argv = " ".join(["vigil bench", f"--seconds {args.seconds:g}", *flags, *(["--only", args.only] if args.only else [])])
    try:
        run_bench(_settings(), smoke=args.smoke, seconds=args.seconds, only=args.only.split(",") if args.only else None,
                  memory=args.memory, overload=args.overload, out=Path(args.out), command=argv)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    from loadtest.soak import SMOKE, run_soak

    shape = ["--smoke"] if args.smoke else [f"--minutes {args.minutes:g}", f"--warmup {args.warmup:g}"]
    argv = " ".join(["vigil soak", *shape, f"--rate {args.rate:g}" if args.rate else f"--load {args.load:g}"])
    options = dict(SMOKE) if args.smoke else {"minutes": args.minutes, "warmup_s": args.warmup}
    try:
        report = run_soak(_settings(), load=args.load, rate=args.rate, out=Path(args.out), command=argv, **options)
    except (ValueError, RuntimeError, OSError) as exc:
        raise UserError(str(exc)) from None
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from vigil.demo import run_demo

    return run_demo(_settings(), requests_count=args.requests)


# --- parser --------------------------------------------------------------------


def _project_root() -> Path:
    """The folder holding service.py (BentoML imports the service from there)."""
    return Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str, description: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=description or help_,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    add("config", cmd_config, "print the settings in force (from VIGIL_* variables)")

    p = add(
        "train",
        cmd_train,
        "train a scikit-learn model, log it to MLflow and register a new version",
        "Train on a bundled dataset (iris, breast_cancer, wine, diabetes) or a CSV file.\n"
        "Logs params, holdout metrics, the input signature and an input example, stores a\n"
        "reference sample (for drift) and held-out rows (for parity) on the run, and\n"
        "registers a new model version. Prints the version and a one-line summary.",
    )
    from lifecycle import estimator_help

    p.epilog = "estimators:\n" + "\n".join("  " + line for line in estimator_help().splitlines())
    p.add_argument("--dataset", default="iris", help="bundled dataset (default: iris)")
    p.add_argument("--csv", help="train on this CSV file instead (needs --target)")
    p.add_argument("--target", help="the CSV column to predict")
    p.add_argument("--name", help="registered model name (default: the dataset's name)")
    p.add_argument("--estimator", default="auto", help="estimator key (default: auto), one of the list below")
    p.add_argument("--task", choices=["classification", "regression"], help="override the inferred task (CSV)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="estimator setting, repeatable, e.g. --param n_estimators=300")
    p.add_argument("--test-size", type=float, default=0.2, help="holdout share (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    for name, func, help_, desc in (
        (
            "convert",
            cmd_convert,
            "convert a registered version to ONNX and prove parity",
            "Load the registered sklearn model, convert it with skl2onnx, check that ONNX\n"
            "Runtime gives the same labels and probabilities (1e-5) on the held-out rows,\n"
            "and attach model.onnx, schema.json and parity.json to the same model version.\n"
            "A version that fails parity is tagged vigil.servable=false.",
        ),
        (
            "export",
            cmd_export,
            "build a bento holding the version's ONNX model and write it to bentos/",
            "Build a bento (bentofile.yaml) that contains the ONNX model and serves it without\n"
            "MLflow, then export it as an archive. `bentoml containerize` turns it into an\n"
            "OCI image where a Docker engine is available.",
        ),
    ):
        p = add(name, func, help_, desc)
        p.add_argument("name", help="registered model name")
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--version", help="model version number")
        group.add_argument("--alias", help="model alias, e.g. champion")
        if name == "convert":
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        else:
            p.add_argument("--out", default="bentos", help="folder for the archive (default: bentos)")

    p = add(
        "serve",
        cmd_serve,
        "start the BentoML service (HTTP on port 3000 by default)",
        "Runs `bentoml serve` on service.py with Vigil's environment. The model comes from\n"
        "VIGIL_MODEL (default models:/iris@champion) or --model: a models:/NAME/VERSION or\n"
        "models:/NAME@ALIAS URI, or a folder holding model.onnx and schema.json.",
    )
    p.add_argument("--port", type=int, help="HTTP port (default: VIGIL_PORT, 3000)")
    p.add_argument("--workers", type=int, help="worker processes (default: VIGIL_WORKERS, 1)")
    p.add_argument("--model", help="model to serve (default: VIGIL_MODEL)")

    p = add("monitor", cmd_monitor, "run the monitor process (HTTP on port 3100 by default)")
    p.add_argument("--port", type=int, help="HTTP port (default: VIGIL_MONITOR_PORT, 3100)")

    p = add("report", cmd_report, "write the HTML drift report")
    p.add_argument("--out", default="drift-report.html", help="output file (default: drift-report.html)")
    p.add_argument("--model", help="registered model name (default: all)")

    p = add(
        "loadtest",
        cmd_loadtest,
        "run Locust against a running service and gate on the SLO (exit 1 on a breach)",
        "Runs Locust headless (or its web UI with --web) against the service, prints a\n"
        "per-endpoint table and the SLO verdict (p50, p99, error rate, throughput from\n"
        "loadtest/slo.yaml), and writes Locust's HTML and CSV reports to --out.",
    )
    p.add_argument("--host", help="service base URL (default: http://VIGIL_HOST:VIGIL_PORT)")
    p.add_argument("--slo", default=str(_project_root() / "loadtest" / "slo.yaml"),
                   help="SLO file (default: loadtest/slo.yaml)")
    p.add_argument("--out", default="loadtest-report", help="folder for the reports (default: loadtest-report)")
    p.add_argument("--users", type=int, help="concurrent users (default: the SLO file's)")
    p.add_argument("--duration", type=int, help="seconds to run (default: the SLO file's)")
    p.add_argument("--web", action="store_true", help="open Locust's web UI instead of running headless")

    p = add(
        "bench",
        cmd_bench,
        "benchmark Vigil (HTTP, gRPC, with the monitor) against its peers; write BENCHMARKS.md",
        "Starts each server in turn pinned to core 0 (wrk / h2load on core 1): Vigil HTTP and\n"
        "gRPC, Vigil streaming to the monitor, the seed-style FastAPI app, `mlflow models serve`\n"
        "and a bare Starlette ceiling; iris and a 300-tree forest (batched vs unbatched).\n"
        "Writes a table with the floors checked and a throughput-vs-p99 chart. Needs wrk and h2load.",
    )
    p.add_argument("--smoke", action="store_true", help="1 s per concurrency, iris only")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds per concurrency (default: 15)")
    p.add_argument("--only", help="comma-separated server names (see BENCHMARKS.md)")
    p.add_argument("--memory", action="store_true", help="also check RSS after 200,000 requests vs after 20,000")
    p.add_argument("--overload", action="store_true", help="also check 503 shedding at 256 clients and recovery")
    p.add_argument("--out", default=str(_project_root() / "BENCHMARKS.md"), help="report file (default: BENCHMARKS.md)")

    p = add(
        "soak",
        cmd_soak,
        "soak Vigil at 80 %% of its measured maximum, HTTP + gRPC, monitor streaming (exit 1 on a missed floor)",
        "Starts Vigil (iris, one worker, gRPC on, streaming to a real monitor) pinned to core 0,\n"
        "measures the maximum of the HTTP + gRPC mix (wrk + h2load on core 1), then offers --load\n"
        "of it at a constant rate for a warm-up plus --minutes. Checks worker RSS growth < 5 %,\n"
        "p99 within VIGIL_SLO_P99_MS in every 10 s, zero errors and a bounded monitor ingest lag;\n"
        "writes soak.png and the Soak section of BENCHMARKS.md. Needs wrk and h2load.",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of load after the warm-up (default: 10)")
    p.add_argument("--load", type=float, default=0.8, help="share of the measured maximum to offer (default: 0.8)")
    p.add_argument("--warmup", type=float, default=60.0, help="warm-up seconds, not judged for RSS (default: 60)")
    p.add_argument("--rate", type=float, help="offer this many req/s in total instead of --load × the maximum")
    p.add_argument("--smoke", action="store_true", help="15 s after a 3 s warm-up (the test suite's run)")
    p.add_argument("--out", default=str(_project_root() / "BENCHMARKS.md"), help="report file (default: BENCHMARKS.md)")

    from vigil import cli_lifecycle  # here, not at the top: it imports this module

    cli_lifecycle.register(sub, add)

    from vigil import cli_log  # the prediction log: vigil log query|export|stats

    cli_log.register(sub, add)

    p = add(
        "demo",
        cmd_demo,
        "the whole loop, narrated: serve v1, drift, retrain v2, hot swap, bad v3, automatic rollback",
        "Trains and promotes iris v1, starts the monitor (with its lifecycle worker), a real\n"
        "`bentoml serve` on models:/iris@champion and Prometheus, then plays the loop under\n"
        "load: drift -> retraining -> v2 promoted -> hot swap -> a bad v3 forced -> live\n"
        "quality drop -> automatic rollback to v2. Ends with swap counts and target health.",
    )
    p.add_argument("--requests", type=int, default=200, help="warm-up predictions to send (default: 200)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vigil` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"vigil {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
