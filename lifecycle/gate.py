"""The promotion gate: what a version must show before it may become the champion.

A candidate passes when it converted with passing parity (vigil.parity = passed), is
servable (vigil.servable = true), and its holdout metric is at least the champion's
minus a tolerance (VIGIL_GATE_METRIC, default the version's vigil.primary_metric;
VIGIL_GATE_TOLERANCE, default 0). Both are scored on the same rows, the model's fixed
evaluation set (lifecycle/fair.py). Retraining adds one more row: both models scored
on the same recent labelled data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lifecycle.fair import holdout_pair, metric_of
from vigil import artifacts as A
from vigil.config import Settings
from vigil.registry import connect

__all__ = ["GateRow", "Verdict", "evaluate", "gate_metric", "metric_of"]

LOWER_IS_BETTER = frozenset({"mae", "rmse"})


@dataclass(frozen=True)
class GateRow:
    check: str
    candidate: str
    champion: str
    required: str
    passed: bool


@dataclass(frozen=True)
class Verdict:
    """The gate's decision with one row per check, printed as a table."""

    model: str
    candidate: str
    champion: str | None
    rows: list[GateRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def failures(self) -> list[str]:
        return [r.check for r in self.rows if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "candidate": self.candidate, "champion": self.champion, "passed": self.passed,
            "rows": [r.__dict__ for r in self.rows],
        }


def gate_metric(settings: Settings, candidate: Any) -> str:
    return settings.gate_metric or candidate.tags.get(A.TAG_PRIMARY_METRIC) or "accuracy"


def evaluate(
    settings: Settings,
    candidate: Any,
    champion: Any | None,
    recent: tuple[float, float] | None = None,
) -> Verdict:
    """Judge `candidate` against `champion` (either a MLflow ModelVersion; champion may be None).

    `recent` is (candidate, champion) scored on the same recent labelled data, if known.
    """
    parity = candidate.tags.get(A.TAG_PARITY, "(not converted)")
    servable = candidate.tags.get(A.TAG_SERVABLE, "(not converted)")
    champ_tags = champion.tags if champion is not None else {}
    rows = [
        GateRow("parity", parity, champ_tags.get(A.TAG_PARITY, "-"), "passed", parity == "passed"),
        GateRow("servable", servable, champ_tags.get(A.TAG_SERVABLE, "-"), "true", servable == "true"),
    ]
    metric = gate_metric(settings, candidate)
    pair = holdout_pair(connect(settings), candidate, champion, metric)
    holdout = _compare(f"holdout {metric}", metric, pair.candidate, pair.champion, settings.gate_tolerance,
                       champion is not None)
    rows.append(GateRow(holdout.check, holdout.candidate, holdout.champion, f"{holdout.required} ({pair.rows})",
                        holdout.passed))
    if recent is not None:
        rows.append(_compare(f"recent-data {metric}", metric, recent[0], recent[1], settings.gate_tolerance, True))
    return Verdict(candidate.name, str(candidate.version), str(champion.version) if champion is not None else None, rows)


def _compare(check: str, metric: str, cand: float | None, champ: float | None, tol: float, has_champion: bool) -> GateRow:
    if cand is None:
        return GateRow(check, "(missing)", _fmt(champ), "a value", False)
    if not has_champion or champ is None:
        # Nothing to beat: the first champion, or one trained before this metric existed.
        return GateRow(check, _fmt(cand), _fmt(champ), "(no champion value)", True)
    if metric in LOWER_IS_BETTER:
        bound = champ + tol
        return GateRow(check, _fmt(cand), _fmt(champ), f"<= {bound:.4f}", cand <= bound)
    bound = champ - tol
    return GateRow(check, _fmt(cand), _fmt(champ), f">= {bound:.4f}", cand >= bound)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
