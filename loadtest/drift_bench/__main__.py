"""`python -m loadtest.drift_bench [--out BENCHMARKS.md] [--no-write]`: run, print, write the section."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vigil.paths import PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    from loadtest.drift_bench.render import floors, section, write_section
    from loadtest.drift_bench.score import run_all

    parser = argparse.ArgumentParser(prog="python -m loadtest.drift_bench", description=__doc__)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    results, alarms, speed = run_all()
    text = section(results, alarms, speed)
    print(text)
    if not args.no_write:
        write_section(text, Path(args.out))
        print(f"\nwrote the drift section of {args.out}")
    return 0 if all(ok for _, ok in floors(results, speed)) else 1


if __name__ == "__main__":
    sys.exit(main())
