"""`python -m monitor [--port N]`: the same as `vigil monitor`."""

from __future__ import annotations

import argparse
import sys

from vigil.config import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor", description="Run the Vigil monitor.")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: VIGIL_MONITOR_PORT or 3100)")
    args = parser.parse_args(argv)
    try:
        settings = load()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from monitor.server import run_monitor

    run_monitor(settings, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
