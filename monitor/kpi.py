"""Business KPIs from labels: outcome rate (conversion) and value (revenue) per version.

Labels may carry an `outcome` (true/false) and a numeric `value` beside the label
(CONTRACT.md, Labels). They are kept in `label_business` by request id and joined with
the labelled rows, so each KPI lands on the version and window that served the row.
`champion_vs_previous` compares the champion with the version before it, so a version can
be judged on what it earns, not only on accuracy.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from monitor.store import Store

_FIELDS = ("labels", "outcomes", "outcome_rate", "values", "value_sum", "value_mean")
_SELECT = (
    "SELECT {group} COUNT(p.label), COUNT(b.outcome), AVG(b.outcome), COUNT(b.value), SUM(b.value), AVG(b.value)"
    " FROM labelled p LEFT JOIN label_business b ON b.request_id = p.request_id"
    " WHERE p.model = ? AND p.version = ? {tail}"
)
# Which version is champion, cached briefly: a scrape must not query the registry every time,
# but a champion move must show in the champion-vs-previous KPIs within a few seconds.
_CHAMPION_TTL_S = 5.0


def window_kpis(store: Store, model: str, version: str, limit: int = 20) -> list[dict[str, Any]]:
    """Per window (oldest first, latest `limit`): label count, outcome rate, value sum and mean."""
    sql = _SELECT.format(group="p.window_start,", tail="GROUP BY p.window_start ORDER BY p.window_start DESC LIMIT ?")
    rows = store.query(sql, (model, version, limit))
    return [{"window_start": r[0], **dict(zip(_FIELDS, r[1:]))} for r in rows[::-1]]


def version_kpis(store: Store, model: str, version: str) -> dict[str, Any]:
    """The same KPIs over every labelled prediction the monitor still keeps for the version."""
    row = store.query(_SELECT.format(group="", tail=""), (model, version))[0]
    return dict(zip(_FIELDS, row))


class ChampionLookup:
    """The registry's @champion version per model, cached (a scrape must stay cheap)."""

    def __init__(self, resolve: Callable[[str], str | None]) -> None:
        self._resolve = resolve
        self._cache: dict[str, tuple[float, str | None]] = {}

    def __call__(self, model: str) -> str | None:
        hit = self._cache.get(model)
        if hit and time.monotonic() - hit[0] < _CHAMPION_TTL_S:
            return hit[1]
        try:
            version = self._resolve(model)
        except Exception:  # no registry, no alias: fall back to the newest version
            version = None
        self._cache[model] = (time.monotonic(), version)
        return version


def registry_champion(settings: Any) -> Callable[[str], str | None]:
    """A resolver asking the MLflow registry for `models:/<model>@champion`."""
    def resolve(model: str) -> str | None:
        from vigil.registry import connect

        return str(connect(settings).get_model_version_by_alias(model, "champion").version)

    return resolve


def _vkey(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 62, version)


def champion_vs_previous(store: Store, model: str, versions: list[str], champion: str | None) -> dict[str, Any] | None:
    """Champion KPIs minus those of the newest labelled version before it (None if no pair)."""
    labelled = {v: k for v in versions if (k := version_kpis(store, model, v))["labels"]}
    if not labelled:
        return None
    ordered = sorted(labelled, key=_vkey)
    champ = champion if champion in labelled else ordered[-1]
    earlier = [v for v in ordered if _vkey(v) < _vkey(champ)]
    if not earlier:
        return None
    prev = earlier[-1]
    a, b = labelled[champ], labelled[prev]

    def diff(key: str) -> float | None:
        return None if a[key] is None or b[key] is None else a[key] - b[key]

    return {"champion": champ, "previous": prev, "outcome_rate_diff": diff("outcome_rate"),
            "value_mean_diff": diff("value_mean"), "champion_kpis": a, "previous_kpis": b}


def kpi_report(monitor: Any, model: str | None = None, windows: int = 20) -> list[dict[str, Any]]:
    """Per model: each version's totals and windows, and the champion-vs-previous difference."""
    lookup = getattr(monitor, "_champion_lookup", None)
    if lookup is None:
        lookup = monitor._champion_lookup = ChampionLookup(registry_champion(monitor.settings))
    by_model: dict[str, list[str]] = {}
    for m, v, _, _ in monitor.versions():
        if model is None or m == model:
            by_model.setdefault(m, []).append(v)
    out = []
    for m, versions in by_model.items():
        entries = [{"version": v, "total": version_kpis(monitor.store, m, v),
                    "windows": window_kpis(monitor.store, m, v, windows)} for v in versions]
        if not any(e["total"]["labels"] for e in entries):
            continue
        out.append({"model": m, "versions": entries,
                    "champion_vs_previous": champion_vs_previous(monitor.store, m, versions, lookup(m))})
    return out
