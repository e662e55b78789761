"""Rich tables for the CLI: `vigil versions`, the gate's verdict, the move history."""

from __future__ import annotations

import time
from typing import Sequence

from rich.table import Table

from lifecycle.gate import Verdict
from lifecycle.moves import VersionRow
from lifecycle.stages import Move

_STAGE_STYLE = {"production": "bold green", "staging": "yellow", "development": "", "archived": "dim"}
_SHOWN_METRICS = ("accuracy", "f1_macro", "roc_auc", "r2", "rmse", "mae")


def versions_table(name: str, rows: Sequence[VersionRow]) -> Table:
    """version, stage, holdout metrics, parity, servable, created, who/why last moved it."""
    table = Table(title=f"{name}: registered versions", title_justify="left")
    for header in ("version", "stage", "holdout metrics", "parity", "servable", "created", "last moved"):
        table.add_column(header, overflow="fold")
    for r in rows:
        metrics = " ".join(f"{m}={r.metrics[m]:.3f}" for m in _SHOWN_METRICS if m in r.metrics) or "-"
        moved = "-"
        if r.last_move is not None:
            m = r.last_move
            moved = f"{m.when} by {m.actor}{' (forced)' if m.forced else ''}: {m.reason}"
        style = _STAGE_STYLE.get(r.stage, "")
        table.add_row(
            r.version, f"[{style}]{r.stage}[/]" if style else r.stage, metrics, r.parity, r.servable,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)), moved,
        )
    return table


def verdict_table(verdict: Verdict) -> Table:
    """The gate's comparison: one row per check, candidate vs champion vs the bar."""
    champion = f"champion v{verdict.champion}" if verdict.champion else "champion (none)"
    outcome = "[green]PASSED[/]" if verdict.passed else "[red]REFUSED[/]"
    table = Table(title=f"promotion gate: {verdict.model} v{verdict.candidate} -> production: {outcome}",
                  title_justify="left")
    for header in ("check", f"candidate v{verdict.candidate}", champion, "required", "result"):
        table.add_column(header)
    for row in verdict.rows:
        table.add_row(row.check, row.candidate, row.champion, row.required,
                      "[green]pass[/]" if row.passed else "[red]FAIL[/]")
    return table


def history_table(name: str, moves: Sequence[Move]) -> Table:
    table = Table(title=f"{name}: promotion history", title_justify="left")
    for header in ("#", "when", "version", "from", "to", "who", "kind", "why"):
        table.add_column(header, overflow="fold")
    for m in moves:
        table.add_row(str(m.seq), m.when, m.version, m.from_stage, m.to_stage,
                      m.actor + (" (forced)" if m.forced else ""), m.kind, m.reason)
    return table
