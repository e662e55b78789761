"""`vigil drift`: the monitor's drift verdict on files, offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import Commands, UserError, load_settings

DESCRIPTION = """\
Compare each CURRENT file (CSV or Parquet, same columns as the reference) with the
reference through the monitor's own comparison, as if its rows were one monitor window.
REF is a file or a registered version (models:/iris/1: its stored reference).

exit status: 0 no major drift in any file, 1 major drift in at least one, 2 bad input.
"""


def cmd_drift(args: argparse.Namespace) -> int:
    from monitor.compare import DriftPolicy
    from monitor.offline import OfflineError, compare_files, format_table, load_reference

    settings = load_settings()
    categorical = [c.strip() for c in (args.categorical or "").split(",") if c.strip()]
    try:
        reference = load_reference(args.reference, settings, categorical, args.target)
        verdicts = compare_files(reference, args.current, DriftPolicy.from_settings(settings))
    except (OfflineError, LookupError) as exc:
        raise UserError(str(exc)) from None
    for v in verdicts:
        print(json.dumps(v.to_dict(), default=str) if args.json else format_table(v) + "\n")
    if args.report:
        from monitor.report_html import offline_report

        Path(args.report).write_text(offline_report(args.reference, reference, verdicts))
        if not args.json:
            print(f"report: {args.report}")
    return 1 if any(v.result["dataset_drift"] for v in verdicts) else 0


def register(commands: Commands) -> None:
    p = commands.add("drift", cmd_drift, "drift verdict of files against a reference, offline", DESCRIPTION)
    p.add_argument("--reference", required=True, metavar="REF", help="CSV/Parquet file or models:/<name>/<version>")
    p.add_argument("--categorical", metavar="C1,C2", help="columns to compare as categories (besides non-numeric ones)")
    p.add_argument("--target", default="target", help="the reference's target column, left out of the features")
    p.add_argument("--json", action="store_true", help="one JSON object per file, in order")
    p.add_argument("--report", metavar="OUT.html", help="also write the HTML report for the files")
    p.add_argument("current", nargs="+", metavar="CURRENT", help="CSV or Parquet files to compare")
