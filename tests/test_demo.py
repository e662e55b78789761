"""`vigil demo` end to end in a fresh VIGIL_HOME: the story's key lines, in order, and exit code 0.

Also the demo's KPI lines (demo/kpis.py) on hand-made monitor samples: the monitor's
champion_diff when it names the served version, else the same difference from the totals.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from vigil.config import load, process_env
from demo.kpis import kpi_lines

def _stop_with_children(proc: subprocess.Popen) -> int:
    """SIGTERM the demo (it stops what it started), then kill whatever of its tree is left; returns that count."""
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=30)
    _, alive = psutil.wait_procs(tree, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.kill()
    return len(alive)


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
    "vigil log stats iris  (rows by the service's agent, labels by the monitor",
    "business KPIs of the served version v2",
    "v2 latest window: ",
    "v2 all kept labelled rows: outcome rate ",
    "champion v2 vs previous v1: outcome rate ",
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
    demo = subprocess.Popen([vigil, "demo"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = demo.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        left = _stop_with_children(demo)
        pytest.fail(f"the demo did not finish within 280 s; after SIGTERM {left} of its processes were still running")
    assert demo.returncode == 0, out[-4000:] + err[-4000:]
    at = 0
    for line in STORY:  # in this order
        found = out.find(line, at)
        assert found >= 0, f"missing (after position {at}): {line!r}\n{out[-6000:]}"
        at = found
    assert out.count("health=up") == 2, out[-2000:]
    assert ", 0 failed" in out and "whole loop:" in out
    assert (tmp_path / "home" / "report.html").exists()
    _assert_log_and_kpis(out)


def _assert_log_and_kpis(out: str) -> None:
    """Every served row is in the log (flushed before the stats), most are labelled, KPIs are real numbers."""
    served = sum(float(n) for n in re.findall(r'vigil_predictions_total\{model="iris",outcome="ok",version="\d"\} (\S+)', out))
    logged, labelled = map(int, re.search(r"iris: (\d+) rows logged, (\d+) labelled", out).groups())
    assert logged == served > 0 and labelled > 0.9 * logged, (logged, labelled, served)
    window = re.search(r"v2 latest window: (\d+) labels, outcome rate ([\d.]+)%, value sum ([\d.]+), value mean ([\d.]+)", out)
    assert window is not None, out[-3000:]
    labels, rate, value_sum, mean = map(float, window.groups())
    assert labels > 0 and 50 < rate <= 100 and value_sum > 0 and 0 < mean <= 40  # prices are 10/25/40
    diff = re.search(r"champion v2 vs previous v1: outcome rate ([+-][\d.]+) pts, value mean ([+-][\d.]+)", out)
    assert diff is not None, out[-3000:]


def _samples(diff_champion: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    mv = lambda v: {"model": "iris", "version": v}  # noqa: E731
    return {
        "labels": [(mv("2"), 30.0)], "outcome_rate": [(mv("2"), 0.9)], "value_sum": [(mv("2"), 600.0)],
        "value_mean": [(mv("2"), 20.0)], "total_outcome_rate": [(mv("1"), 0.7), (mv("2"), 0.85), (mv("3"), 0.2)],
        "total_value_mean": [(mv("1"), 15.0), (mv("2"), 19.5), (mv("3"), float("nan"))],
        "champion_diff": [({"model": "iris", "champion": diff_champion, "previous": "0", "kpi": "outcome_rate"}, 0.5),
                          ({"model": "iris", "champion": diff_champion, "previous": "0", "kpi": "value_mean"}, -1.0)],
    }


def test_kpi_lines_prefer_the_monitors_diff_and_fall_back_to_totals() -> None:
    lines = kpi_lines(_samples("2"), "iris", "2")
    assert lines[0] == "v2 latest window: 30 labels, outcome rate 90.0%, value sum 600.00, value mean 20.00"
    assert lines[1] == "v2 all kept labelled rows: outcome rate 85.0%, value mean 19.50"
    assert lines[2] == ("champion v2 vs previous v0: outcome rate +50.0 pts, value mean -1.00 "
                        "(vigil_monitor_kpi_champion_diff)")
    stale = kpi_lines(_samples("3"), "iris", "2")  # the monitor still names v3 the champion
    assert stale[2] == "champion v2 vs previous v1: outcome rate +15.0 pts, value mean +4.50 (from the per-version totals)"
    assert kpi_lines(_samples("2"), "iris", "9") == ["v9: no labels with outcome/value joined yet"]
    assert kpi_lines(_samples("3"), "iris", "3")[1].endswith("value mean -")


@pytest.mark.integration
@pytest.mark.timeout(200)
def test_a_stopped_demo_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGTERM once the demo serves: the service, the monitor and Prometheus it started stop with it."""
    env = process_env(load({"VIGIL_HOME": str(tmp_path / "home")}))
    env["VIGIL_HOME"] = str(tmp_path / "home")
    demo = subprocess.Popen([str(Path(sys.executable).with_name("vigil")), "demo"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in demo.stdout:  # type: ignore[union-attr]
            if "serving iris v1" in line:
                break
        tree = psutil.Process(demo.pid).children(recursive=True)
        assert len(tree) >= 3, [p.name() for p in tree]  # service (+ workers), monitor, prometheus
        demo.terminate()
        assert demo.wait(60) != 0
        _, alive = psutil.wait_procs(tree, timeout=20)
        assert not alive, f"still running after the demo stopped: {[p.cmdline()[:3] for p in alive]}"
    finally:
        _stop_with_children(demo) if demo.poll() is None else None


def test_a_sigterm_whose_exit_was_swallowed_still_stops_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SystemExit a SIGTERM raises can be swallowed where it lands; the next narrated line re-raises it."""
    import signal

    from demo import story

    monkeypatch.setattr(story, "_terminated", [])
    try:
        story._stop_on_sigterm(signal.SIGTERM, None)
    except SystemExit:
        pass  # swallowed, as a broad `except` or a __del__ would
    with pytest.raises(SystemExit) as stopped:
        story._say("the demo goes on")
    assert stopped.value.code == 128 + signal.SIGTERM
    with pytest.raises(SystemExit):
        story._step("next step")
