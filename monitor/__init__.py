"""The Vigil monitor: ingests profile streams, computes drift and quality, exports metrics.

Public entry points for the CLI: `run_monitor` (vigil monitor) and `write_report`
(vigil report). The wire contract with the service is in CONTRACT.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vigil.config import Settings


def run_monitor(settings: "Settings", port: int | None = None) -> None:
    """Serve the monitor (blocking) on `port` or `settings.monitor_port`."""
    from monitor.server import run_monitor as _run

    _run(settings, port)


def write_report(settings: "Settings", out: Path, model: str | None = None) -> Path:
    """Write the HTML drift report to `out` (from the running monitor, else its saved state)."""
    from monitor.report import write_report as _write

    return _write(settings, out, model)
