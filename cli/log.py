"""`vigil log`: query, export and summarise the prediction log (vigil/predlog/).

`register(commands)` adds the subcommand to the `vigil` parser (cli/main.py); the handlers
are thin shells around vigil.predlog.query, turning its user errors into one line.
Unreadable files are skipped by the reader with a logged warning (on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import Commands, UserError, load_settings


def _root() -> Path:
    root = load_settings().prediction_log_dir
    if root is None:
        raise UserError("the prediction log is off (VIGIL_PREDICTION_LOG=off)")
    return root


def _target(name: str, given: str | None) -> str:
    """The target column name: --target, else the newest version's vigil.target tag."""
    if given:
        return given
    from vigil.artifacts import TAG_TARGET
    from vigil.registry import connect

    try:
        versions = connect(load_settings()).search_model_versions(f"name = '{name}'")
    except Exception as exc:  # no registry reachable
        raise UserError(f"cannot read model {name!r} from the registry ({exc}); pass --target") from None
    tagged = [v for v in versions if TAG_TARGET in (v.tags or {})]
    if not tagged:
        raise UserError(f"no version of {name!r} has a {TAG_TARGET} tag; pass --target")
    return max(tagged, key=lambda v: int(v.version)).tags[TAG_TARGET]


def cmd_log_query(args: argparse.Namespace) -> int:
    from vigil.predlog.query import LogError, query

    try:
        frame, view = query(_root(), args.sql)
    except LogError as exc:
        raise UserError(str(exc)) from None
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        print(frame.to_string(index=False) if len(frame) else "(no rows)")
    return 0


def cmd_log_export(args: argparse.Namespace) -> int:
    from vigil.predlog.query import LogError, export

    try:
        result = export(_root(), args.name, _target(args.name, args.target), Path(args.out),
                        since=args.since, labelled=args.labelled)
    except LogError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {result.rows} rows to {result.path} (columns: {', '.join(result.columns)})")
    return 0


def cmd_log_stats(args: argparse.Namespace) -> int:
    from vigil.predlog.query import LogError, stats, stats_lines

    try:
        rows, view = stats(_root(), args.name)
    except LogError as exc:
        raise UserError(str(exc)) from None
    print("\n".join(stats_lines(args.name, rows)))
    return 0


def register(commands: Commands) -> None:
    """Add `vigil log {query,export,stats}` to the `vigil` parser."""
    add = commands.add
    p = add(
        "log",
        lambda args: args.log_func(args),
        "query, export and summarise the prediction log (served rows + labels)",
        "The prediction log keeps served rows (features, prediction, scores, version, request\n"
        "id, time, sampling_rate) and the labels posted to the monitor, as Parquet under\n"
        "VIGIL_PREDICTION_LOG (default $VIGIL_HOME/predictions). DuckDB views: served, labels,\n"
        "latest_labels, predictions (served LEFT JOIN the latest label per request_id).",
    )
    log_sub = p.add_subparsers(dest="log_command", metavar="LOG_COMMAND", required=True)

    q = log_sub.add_parser("query", help="run SQL against the views, e.g. SELECT version, COUNT(*) FROM predictions GROUP BY 1")
    q.add_argument("sql", help="the SQL (DuckDB dialect)")
    q.add_argument("--format", choices=["table", "csv"], default="table", help="output format (default: table)")
    q.set_defaults(log_func=cmd_log_query)

    e = log_sub.add_parser("export", help="write a model's rows as features + target, the columns `vigil train --csv` takes")
    e.add_argument("name", help="registered model name")
    e.add_argument("--out", required=True, help="output file, .parquet or .csv")
    e.add_argument("--since", help="only rows served in this period, e.g. 7d, 12h, 30m")
    e.add_argument("--labelled", action="store_true", help="only rows with a label")
    e.add_argument("--target", help="target column name (default: the version's vigil.target tag)")
    e.set_defaults(log_func=cmd_log_export)

    s = log_sub.add_parser("stats", help="rows, labelled share, outcome rate and value per version")
    s.add_argument("name", help="registered model name")
    s.set_defaults(log_func=cmd_log_stats)
