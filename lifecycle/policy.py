"""Pure decision rules for automatic moves: roll back a worse champion, retrain on drift.

No I/O here: the lifecycle worker (lifecycle/worker.py) feeds them the monitor's
windows and the registry's history, executes the decision, and audits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from vigil.config import Settings

ROLLBACK, ALERT, HOLD, RETRAIN = "rollback", "alert", "hold", "retrain"


@dataclass(frozen=True)
class WindowQuality:
    """Live quality of one monitor window: the metric over its labelled predictions."""

    window_start: int
    value: float | None
    labels: int


@dataclass(frozen=True)
class Decision:
    """What a policy decided, why, and the evidence it looked at (goes to the audit log)."""

    action: str  # rollback | alert | hold | retrain
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RollbackPolicy:
    """Roll back when the champion trails the previous champion over K labelled windows.

    Roll back when the latest `windows` windows that have at least `min_labels` labels
    each all score below `baseline - margin` (the previous champion's recorded
    quality). Windows with fewer labels are too noisy to judge and are skipped.
    Guard rails: nothing within `cooldown_s` of the last champion move (the new one
    needs time to gather evidence), at most one automatic move per `period_s`, and in
    `dry_run` the decision is only an alert.
    """

    margin: float = 0.05
    windows: int = 3
    min_labels: int = 30
    cooldown_s: float = 600.0
    period_s: float = 3600.0
    dry_run: bool = False
    lower_is_better: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, lower_is_better: bool = False) -> "RollbackPolicy":
        return cls(settings.rollback_margin, settings.rollback_windows, settings.rollback_min_labels,
                   float(settings.rollback_cooldown_seconds), float(settings.auto_move_period_seconds),
                   settings.rollback_dry_run, lower_is_better)

    def decide(
        self,
        champion: str,
        previous: str | None,
        baseline: float | None,
        windows: Sequence[WindowQuality],
        now: float,
        last_champion_move_at: float | None = None,
        last_auto_move_at: float | None = None,
    ) -> Decision:
        """The decision for `champion` given its live windows (oldest first)."""
        judged = [w for w in windows if w.labels >= self.min_labels and w.value is not None][-self.windows:]
        evidence: dict[str, Any] = {
            "champion": champion, "previous": previous, "baseline": baseline, "margin": self.margin,
            "windows": [w.__dict__ for w in judged], "min_labels": self.min_labels, "dry_run": self.dry_run,
        }
        if len(judged) < self.windows:
            return Decision(HOLD, f"only {len(judged)} of {self.windows} windows have >= {self.min_labels} labels",
                            evidence)
        if baseline is None:
            return Decision(HOLD, "no recorded quality of a previous champion to compare with", evidence)
        bar = baseline + self.margin if self.lower_is_better else baseline - self.margin
        worse = [w for w in judged if (w.value > bar if self.lower_is_better else w.value < bar)]  # type: ignore[operator]
        evidence["bar"] = bar
        if len(worse) < self.windows:
            return Decision(HOLD, f"{len(worse)} of the last {self.windows} labelled windows are worse than {bar:.4f}",
                            evidence)
        summary = (f"v{champion} scored {', '.join(f'{w.value:.3f}' for w in judged)} over {self.windows} windows, "
                   f"below v{previous}'s {baseline:.3f} - {self.margin}")
        if previous is None:
            return Decision(ALERT, f"{summary}, but no previous champion is recorded", evidence)
        if last_champion_move_at is not None and now - last_champion_move_at < self.cooldown_s:
            left = self.cooldown_s - (now - last_champion_move_at)
            return Decision(HOLD, f"{summary}; cooldown: champion moved {now - last_champion_move_at:.0f}s ago "
                                  f"({left:.0f}s left)", evidence)
        if last_auto_move_at is not None and now - last_auto_move_at < self.period_s:
            return Decision(HOLD, f"{summary}; an automatic move already happened {now - last_auto_move_at:.0f}s ago "
                                  f"(at most one per {self.period_s:.0f}s)", evidence)
        if self.dry_run:
            return Decision(ALERT, f"dry run: would roll back to v{previous}: {summary}", evidence)
        return Decision(ROLLBACK, f"automatic rollback to v{previous}: {summary}", evidence)


@dataclass(frozen=True)
class DriftWindow:
    """One monitor window's dataset-drift verdict with the features that drifted."""

    window_start: int
    dataset_drift: bool
    drift_share: float = 0.0
    drifted_features: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftTrigger:
    """Trigger retraining when dataset drift persists over the latest K windows.

    Debounced: no trigger within `debounce_s` of the last one, and never twice from
    the same drift streak (the K windows must all start after the last trigger's window).
    """

    windows: int = 3
    debounce_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "DriftTrigger":
        return cls(settings.retrain_windows, float(settings.retrain_debounce_seconds))

    def decide(
        self,
        history: Sequence[DriftWindow],
        now: float,
        last_trigger_at: float | None = None,
        last_trigger_window: int | None = None,
    ) -> Decision:
        """RETRAIN or HOLD for the windows in `history` (oldest first)."""
        latest = sorted(history, key=lambda w: w.window_start)[-self.windows:]
        evidence = {
            "windows": [w.window_start for w in latest],
            "drift_share": [w.drift_share for w in latest],
            "features": sorted({f for w in latest for f in w.drifted_features}),
            "scores": latest[-1].scores if latest else {},
        }
        if len(latest) < self.windows or not all(w.dataset_drift for w in latest):
            drifted = sum(w.dataset_drift for w in latest)
            return Decision(HOLD, f"dataset drift in {drifted} of the last {self.windows} windows", evidence)
        if last_trigger_window is not None and latest[0].window_start <= last_trigger_window:
            return Decision(HOLD, "this drift streak already triggered a retraining", evidence)
        if last_trigger_at is not None and now - last_trigger_at < self.debounce_s:
            return Decision(HOLD, f"debounced: last retraining triggered {now - last_trigger_at:.0f}s ago "
                                  f"(at most one per {self.debounce_s:.0f}s)", evidence)
        return Decision(RETRAIN, f"dataset drift persisted over {self.windows} windows "
                                 f"(features: {', '.join(evidence['features']) or '-'})", evidence)
