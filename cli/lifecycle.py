"""The lifecycle subcommands of `vigil`: versions, promote, demote, archive, rollback, retrain.

`register(commands)` adds them to the `vigil` parser (cli/main.py); the handlers are thin
shells around lifecycle/ functions, turning their user errors into one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from cli.common import Commands, UserError, load_settings


def _lifecycle(func: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Run a lifecycle function; its user errors become one line, a gate refusal also prints the verdict."""
    from lifecycle.errors import GateRefused, LifecycleError
    from vigil.registry import RegistryError

    try:
        return func(load_settings(), *args, **kwargs)
    except GateRefused as exc:
        from rich.console import Console

        from lifecycle.render import verdict_table

        Console().print(verdict_table(exc.verdict))  # type: ignore[arg-type]
        raise UserError(str(exc)) from None
    except (LifecycleError, RegistryError) as exc:
        raise UserError(str(exc)) from None


def cmd_versions(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lifecycle.moves import versions
    from lifecycle.render import history_table, versions_table
    from lifecycle.stages import history
    from vigil.registry import connect

    rows = _lifecycle(versions, args.name)
    console = Console()
    console.print(versions_table(args.name, rows))  # type: ignore[arg-type]
    if args.history:
        console.print(history_table(args.name, history(connect(load_settings()), args.name)))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from lifecycle.moves import promote

    move = _lifecycle(promote, args.name, args.version, args.to, reason=args.reason or "", force=args.force)
    if args.to == "production":
        _print_verdict(args.name, args.version)
    print(move.describe())  # type: ignore[attr-defined]
    return 0


def _print_verdict(name: str, version: str) -> None:
    """The gate table as it stands after the move (the old champion is now the previous one)."""
    from rich.console import Console

    from lifecycle import gate
    from lifecycle.moves import previous_champion
    from lifecycle.render import verdict_table
    from lifecycle.stages import history
    from vigil.registry import connect

    settings = load_settings()
    client = connect(settings)
    previous = previous_champion(history(client, name), version)
    champion = client.get_model_version(name, previous) if previous else None
    Console().print(verdict_table(gate.evaluate(settings, client.get_model_version(name, version), champion)))


def cmd_demote(args: argparse.Namespace) -> int:
    from lifecycle.moves import demote

    print(_lifecycle(demote, args.name, args.version, reason=args.reason or "", force=args.force).describe())  # type: ignore[attr-defined]
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from lifecycle.moves import archive

    print(_lifecycle(archive, args.name, args.version, reason=args.reason or "", force=args.force).describe())  # type: ignore[attr-defined]
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from lifecycle.moves import rollback

    print(_lifecycle(rollback, args.name, to=args.to, reason=args.reason or "").describe())  # type: ignore[attr-defined]
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from lifecycle.retrain import retrain

    settings = load_settings()
    result = _lifecycle(retrain, args.name, recent=Path(args.data) if args.data else None,
                        auto_promote=args.auto_promote or settings.auto_promote)
    print(result.summary())  # type: ignore[attr-defined]
    if result.verdict is not None:  # type: ignore[attr-defined]
        from rich.console import Console

        from lifecycle.render import verdict_table

        Console().print(verdict_table(result.verdict))  # type: ignore[attr-defined]
    return 0



def register(commands: Commands) -> None:
    """Add the lifecycle subcommands to the `vigil` parser."""
    add = commands.add
    p = add(
        "versions",
        cmd_versions,
        "list a model's versions: stage, holdout metrics, parity, who moved them and why",
        "Stages are registry aliases: staging = @challenger, production = @champion;\n"
        "development and archived are the vigil.stage version tag. --history prints every\n"
        "recorded move (kept on the registry as vigil.move.<n> tags of the model).",
    )
    p.add_argument("name", help="registered model name")
    p.add_argument("--history", action="store_true", help="also print the promotion history")

    p = add(
        "promote",
        cmd_promote,
        "move a version to staging (@challenger) or production (@champion)",
        "Production passes the gate first: vigil.parity=passed, vigil.servable=true and the\n"
        "holdout metric (VIGIL_GATE_METRIC, default the primary one) at least the champion's\n"
        "minus VIGIL_GATE_TOLERANCE. The verdict is printed as a table. --force overrides a\n"
        "refusal and is recorded. The replaced champion is archived.",
    )
    p.add_argument("name", help="registered model name")
    p.add_argument("version", help="model version number")
    p.add_argument("--to", required=True, choices=["staging", "production"], help="target stage")
    p.add_argument("--reason", help="why (recorded in the history)")
    p.add_argument("--force", action="store_true", help="promote even if the gate refuses (recorded)")

    for name, func, help_ in (
        ("demote", cmd_demote, "move a version one stage down (production -> staging -> development)"),
        ("archive", cmd_archive, "archive a version (drops its alias)"),
    ):
        p = add(name, func, help_)
        p.add_argument("name", help="registered model name")
        p.add_argument("version", help="model version number")
        p.add_argument("--reason", help="why (recorded in the history)")
        p.add_argument("--force", action="store_true", help="allow it on the champion (leaves no champion)")

    p = add(
        "rollback",
        cmd_rollback,
        "make the previous champion (or --to VERSION) the champion again",
        "The previous champion comes from Vigil's history on the registry, so this works from\n"
        "any machine that reaches it. Rolling back twice returns to where you started.",
    )
    p.add_argument("name", help="registered model name")
    p.add_argument("--to", help="version to restore (default: the previous champion)")
    p.add_argument("--reason", help="why (recorded in the history)")

    p = add(
        "retrain",
        cmd_retrain,
        "retrain on reference + recent labelled data, convert, compare, promote to staging",
        "Trains with the champion's estimator on its reference sample plus recent labelled rows\n"
        "(--data or VIGIL_RETRAIN_DATA: a CSV, or a directory of CSV/Parquet files with the\n"
        "feature columns and the target; neither given: the prediction log's labelled rows,\n"
        "as `vigil log export NAME --labelled`), registers and converts the new version, scores it\n"
        "and the champion on the recent rows, and promotes it to staging; to production only\n"
        "with --auto-promote (or VIGIL_AUTO_PROMOTE=1) and a passing gate.",
    )
    p.add_argument("name", help="registered model name")
    p.add_argument("--data", help="recent labelled data (default: VIGIL_RETRAIN_DATA, else the prediction log's labelled rows)")
    p.add_argument("--auto-promote", action="store_true", help="promote to production if the gate passes")
