"""`vigil demo` end to end in a fresh VIGIL_HOME: the story's key lines, in order, and exit code 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vigil.config import load, process_env

STORY = [
    "vigil train --dataset iris",
    "vigil promote iris 1 --to production",
    "serving iris v1 (hot swap on: follows @champion)",
    "drift injected",
    "monitor flagged it: dataset drift persisted",
    "registered v2; iris v2: staging -> production",
    "gate passed",
    "service hot-swapped to v2",
    "a bad v3 is forced to production",
    "iris v3: development -> production (forced)",
    "service hot-swapped to v3",
    "cooldown: champion moved",
    "automatic rollback: iris v2: archived -> production by vigil-auto",
    "service hot-swapped to v2",
    "vigil-monitor",
    "vigil-service",
    "Grafana: add Prometheus as a data source",
    "loop: retrained v2 (1 retraining trigger), forced v3, rolled back to v2",
    "failures during swaps: 0",
]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_vigil_demo_tells_the_whole_loop(tmp_path: Path) -> None:
    env = process_env(load({"VIGIL_HOME": str(tmp_path / "home")}))
    env["VIGIL_HOME"] = str(tmp_path / "home")
    vigil = str(Path(sys.executable).with_name("vigil"))
    done = subprocess.run([vigil, "demo"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=280)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    at = 0
    for line in STORY:  # in this order
        found = out.find(line, at)
        assert found >= 0, f"missing (after position {at}): {line!r}\n{out[-6000:]}"
        at = found
    assert out.count("health=up") == 2, out[-2000:]
    assert ", 0 failed" in out and "whole loop:" in out
    assert (tmp_path / "home" / "report.html").exists()
