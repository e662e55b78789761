"""The drift benchmark's parts: the peer rules, a scenario scored end to end, the BENCHMARKS.md section."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.drift_bench import rules
from loadtest.drift_bench.render import section, write_section
from loadtest.drift_bench.score import BEGIN, END, RULES, run_scenario, speed
from loadtest.drift_bench.scenarios import agrawal
from loadtest.report import MARKER


def test_peer_rules_follow_their_definitions() -> None:
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "d"]
    ref = pd.DataFrame(rng.normal(size=(3000, 4)), columns=names)
    small = ref.iloc[:800]
    # normed Wasserstein 0.3 on 2 of 4 features: half the features -> drift (large reference)
    cur = pd.DataFrame(rng.normal(size=(500, 4)), columns=names)
    cur[["a", "b"]] += 0.3
    assert rules.evidently_style(ref, cur, names)
    cur_one = pd.DataFrame(rng.normal(size=(500, 4)), columns=names)
    cur_one["a"] += 0.3
    assert not rules.evidently_style(ref, cur_one, names)  # 1 of 4
    assert rules.evidently_style(small, cur, names)  # small reference: KS p < 0.05 decides
    # PSI: a 0.3 sd shift is ~0.1, under 0.25; a 1 sd shift is far over
    assert not rules.psi_rule(ref, cur, names)
    cur[["a", "b"]] += 0.7
    assert rules.psi_rule(ref, cur, names)


def test_agrawal_scenario_scores_every_window_and_vigil_meets_the_floors() -> None:
    result = run_scenario(agrawal())
    vigil = result.rules[RULES[0]]
    assert (len(vigil.stable), len(vigil.harmless), len(vigil.harmful)) == (20, 14, 5)
    assert sum(vigil.stable) == 0 and vigil.delay == 0 and sum(vigil.harmless) * 7 <= 14
    assert result.quality["harmful"] < result.quality["stable"] - 0.2  # the harmful change does hurt the model
    assert abs(result.quality["harmless"] - result.quality["stable"]) < 0.02  # the harmless one does not
    assert all(len(r.ms) == 39 for r in result.rules.values())


def test_section_lands_between_its_markers_and_keeps_the_rest(tmp_path) -> None:
    result = run_scenario(agrawal(window=200))
    text = section([result], {"windows": 1, "significant": 0.0, "minor": 0.0, "major": 0.0}, speed(repeats=2))
    assert "| agrawal, W=200 | Vigil |" in text and "Floors:" in text
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\nkept by hand\n\n{MARKER}\ngenerated\n")
    write_section(text, out)
    write_section(text.replace("Floors:", "Floors (again):"), out)
    body = out.read_text()
    assert body.count(BEGIN) == 1 and body.count(END) == 1 and "Floors (again):" in body
    assert body.index("kept by hand") < body.index(BEGIN) < body.index(END) < body.index(MARKER)
    assert body.rstrip().endswith("generated")
