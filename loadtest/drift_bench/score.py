"""Run the rules over every scenario's windows, time them, and render the BENCHMARKS.md section."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loadtest.drift_bench import rules
from monitor.compare import DriftPolicy
from loadtest.drift_bench.scenarios import ALL, Scenario

BEGIN, END = "<!-- drift-bench:begin -->", "<!-- drift-bench:end -->"
RULES = ("Vigil", "Evidently-style defaults", "PSI > 0.25, half the features")


@dataclass
class RuleScore:
    stable: list[bool] = field(default_factory=list)
    harmless: list[bool] = field(default_factory=list)
    harmful: list[bool] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)

    @property
    def delay(self) -> int | None:
        """Windows after the change before the first alarm (0: the first full window)."""
        return next((i for i, flag in enumerate(self.harmful) if flag), None)


@dataclass
class ScenarioScore:
    scenario: Scenario
    rules: dict[str, RuleScore]
    quality: dict[str, float]  # reference / stable / harmless / harmful score of the model
    vigil_levels: dict[str, list[str]]  # severities per group, for the table's note
    caught_by: list[str]  # per harmful window Vigil flagged: "features", "prediction" or both


def build_reference(s: Scenario) -> Any:
    from converter.importance import permutation_importance_of
    from monitor.offline import reference_from_frame

    frame = s.reference[s.features + ["target"]].assign(prediction=s.predict(s.reference))
    reference = reference_from_frame(frame, task=s.task, name=s.name)
    reference.importance = permutation_importance_of(s.estimator, s.holdout[s.features], s.holdout["target"],
                                                     s.task)["importance"]
    reference.profile()
    return reference


def _score(s: Scenario, frame: pd.DataFrame) -> float:
    from sklearn.metrics import accuracy_score, r2_score

    pred = s.predict(frame)
    return float(accuracy_score(frame["target"], pred) if s.task == "classification" else r2_score(frame["target"], pred))


def run_scenario(s: Scenario) -> ScenarioScore:
    reference = build_reference(s)
    ref_rows = s.reference[s.features]
    scores = {name: RuleScore() for name in RULES}
    levels: dict[str, list[str]] = {}
    caught: list[str] = []
    quality = {"reference": _score(s, s.holdout)}
    for group in ("stable", "harmless", "harmful"):
        windows = getattr(s, group)
        quality[group] = float(np.mean([_score(s, w) for w in windows]))
        for w in windows:
            live = w[s.features].assign(prediction=s.predict(w))
            started = time.perf_counter()
            verdict = rules.vigil(reference, live)
            scores[RULES[0]].ms.append((time.perf_counter() - started) * 1e3)
            getattr(scores[RULES[0]], group).append(verdict.dataset_drift)
            levels.setdefault(group, []).append(verdict.severity)
            if group == "harmful" and verdict.dataset_drift:
                by = [name for name, hit in (("features", verdict.drift_share >= DriftPolicy().share),
                                             ("prediction", bool(verdict.prediction and verdict.prediction.drift))) if hit]
                caught.append("+".join(by))
            for name, fn in ((RULES[1], rules.evidently_style), (RULES[2], rules.psi_rule)):
                started = time.perf_counter()
                flag = fn(ref_rows, live, s.features)
                scores[name].ms.append((time.perf_counter() - started) * 1e3)
                getattr(scores[name], group).append(bool(flag))
    return ScenarioScore(s, scores, quality, levels, caught)


def false_alarm_rate(windows: int = 500, rows: int = 500, seed: int = 7) -> dict[str, float]:
    """Reference-resampled windows of the seasonal scenario: how often any column is significant, minor, major."""
    from loadtest.drift_bench.scenarios import seasonal

    s = seasonal(rows)
    reference = build_reference(s)
    rng = np.random.default_rng(seed)
    significant = minor = major = 0
    for _ in range(windows):
        w = s.reference.iloc[rng.integers(0, len(s.reference), rows)].reset_index(drop=True)
        v = rules.vigil(reference, w[s.features].assign(prediction=s.predict(w)))
        cols = v.features + ([v.prediction] if v.prediction else [])
        significant += any(c.p_value < v.alpha_per_test for c in cols)
        minor += v.severity != "none"
        major += v.dataset_drift
    return {"windows": windows, "significant": significant / windows, "minor": minor / windows, "major": major / windows}


def speed(rows: int = 2000, features: int = 8, repeats: int = 30, seed: int = 3) -> dict[str, float]:
    """Median ms per window on `features` numeric columns: Vigil profile + compare, compare alone, the peers."""
    from monitor.compare import compare_window
    from vigil.profile_builder import build_view

    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(features)]
    ref = pd.DataFrame(rng.normal(size=(5000, features)), columns=names)
    ref_view = build_view({c: ref[c].to_numpy() for c in names})
    out: dict[str, list[float]] = {"profile_compare": [], "compare": [], "evidently": [], "psi": []}
    for i in range(repeats):
        cur = pd.DataFrame(rng.normal(0.1 * (i % 3), 1, size=(rows, features)), columns=names)
        t0 = time.perf_counter()
        view = build_view({c: cur[c].to_numpy() for c in names})
        t1 = time.perf_counter()
        compare_window(ref_view, view, names)
        t2 = time.perf_counter()
        rules.evidently_style(ref, cur, names)
        t3 = time.perf_counter()
        rules.psi_rule(ref, cur, names)
        t4 = time.perf_counter()
        out["profile_compare"].append((t2 - t0) * 1e3)
        out["compare"].append((t2 - t1) * 1e3)
        out["evidently"].append((t3 - t2) * 1e3)
        out["psi"].append((t4 - t3) * 1e3)
    return {k: float(np.median(v)) for k, v in out.items()}


def run_all() -> tuple[list[ScenarioScore], dict[str, float], dict[str, float]]:
    return [run_scenario(make()) for make in ALL], false_alarm_rate(), speed()
