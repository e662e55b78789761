"""`vigil`: the one command that fronts the whole workflow (entry point of the console script)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from cli import drift, lifecycle, log, models, ops, topology
from cli.common import Commands, UserError

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


def build_parser() -> argparse.ArgumentParser:
    """The `vigil` parser with every subcommand group registered."""
    parser = argparse.ArgumentParser(
        prog="vigil", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    for group in (models, ops, lifecycle, log, drift, topology):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vigil` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The first command on a fresh machine creates the SQLite registry: MLflow and alembic
    # log each migration at INFO, which reads like output of the command (or of its error).
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
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
