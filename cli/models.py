"""`vigil config|train|convert|serve|export`: from data to a registered, converted, packed model."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from cli.common import Commands, UserError, load_settings, model_ref
from vigil import config
from vigil.paths import PROJECT_ROOT


def cmd_config(args: argparse.Namespace) -> int:
    if args.markdown:  # the README's settings tables, from the declarations in vigil/config.py
        for section in config.SECTIONS:
            print(f"**{section}**\n\n{config.settings_table(section)}\n")
        return 0
    settings = load_settings()
    secret = {f.name for f in dataclasses.fields(settings) if not f.repr}  # tokens and webhook secrets
    for name, value in sorted(vars(settings).items()):
        print(f"{name:22} {'(set)' if name in secret and value else value}")
    print(f"{'mlflow_uri':22} {settings.mlflow_uri}")
    print(f"{'batch_latency_ms':22} {settings.batch_latency_ms}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from lifecycle import TrainError, train

    settings = load_settings()
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

    settings = load_settings()
    try:
        report = convert_version(settings, model_ref(args.name, args.version, args.alias), progress=not args.quiet)
    except (ConversionError, RegistryError) as exc:
        raise UserError(str(exc)) from None
    print(report.summary())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.launch import serve_command

    from serving.source import SourceError, locate

    settings = load_settings()
    if args.model:
        settings = config.replace(settings, model=args.model)
    try:
        folder = locate(settings)  # fail here, in one line, rather than in every worker
    except SourceError as exc:
        raise UserError(str(exc)) from None
    print(f"model files: {folder.path}")
    argv, env = serve_command(settings, port=args.port, workers=args.workers)
    print(f"serving {settings.model_uri} on {settings.scheme}://{settings.host}:{args.port or settings.port}", flush=True)
    # Replace this process with the server so signals (Ctrl+C, SIGTERM) reach it directly.
    os.chdir(PROJECT_ROOT)
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def cmd_export(args: argparse.Namespace) -> int:
    from vigil.registry import RegistryError
    from serving.bento import ExportError, export_bento
    from serving.source import SourceError

    settings = load_settings()
    try:
        path = export_bento(settings, model_ref(args.name, args.version, args.alias), Path(args.out))
    except (ExportError, SourceError, RegistryError) as exc:
        raise UserError(str(exc)) from None
    print(f"bento archive: {path}")
    return 0




def register(commands: Commands) -> None:
    """Add config, train, convert, export and serve."""
    add = commands.add
    p = add("config", cmd_config, "print the settings in force (from VIGIL_* variables)")
    p.add_argument("--markdown", action="store_true", help="print every setting as the README's tables instead")

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

