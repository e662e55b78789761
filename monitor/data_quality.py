"""Data quality of a window against the reference: missing values, range, categories, schema."""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor.reference import Reference


def _summary(view: Any, column: str) -> dict[str, Any]:
    col = view.get_column(column)
    return col.to_summary_dict() if col is not None else {}


def _out_of_range(view: Any, column: str, low: float, high: float, infinite: int) -> float:
    """Share of finite values below the reference minimum or above its maximum.

    The KLL sketch holds the ±inf values too (always outside the range): they are taken
    out of both the outside mass and the total, so inf is counted once, as `inf`.
    """
    dist = view.get_column(column).get_metric("distribution")
    sketch = dist.kll.value if dist is not None else None
    if sketch is None or sketch.get_n() == 0 or not np.isfinite([low, high]).all():
        return 0.0
    n = sketch.get_n()
    below = sketch.get_cdf([low], False)[0]  # P(X < low)
    at_most_high = sketch.get_cdf([high], True)[0]  # P(X <= high)
    outside = (max(0.0, below) + max(0.0, 1.0 - at_most_high)) * n - infinite
    finite = n - infinite
    return float(min(1.0, max(0.0, outside) / finite)) if finite > 0 else 0.0


def _unseen_share(view: Any, column: str, known: set[str], rows: int) -> tuple[float, list[str]]:
    col = view.get_column(column)
    metric = col.get_metric("frequent_items") if col is not None else None
    if metric is None or rows == 0:
        return 0.0, []
    items = metric.to_summary_dict().get("frequent_strings", [])
    unseen = [(i.value, float(i.est)) for i in items if i.value not in known]
    return sum(c for _, c in unseen) / rows, sorted(v for v, _ in unseen)[:20]


def data_quality(view: Any, reference: Reference) -> dict[str, Any]:
    """Per-feature counts and shares, plus the schema violations of the window."""
    present = set(view.get_columns())
    expected = set(reference.features) | set(reference.outputs)
    columns: dict[str, dict[str, Any]] = {}
    violations: list[str] = [f"missing column {c!r}" for c in sorted(set(reference.features) - present)]
    violations += [f"unexpected column {c!r}" for c in sorted(present - expected)]
    for name in reference.features:
        if name not in present:
            continue
        s = _summary(view, name)
        rows = int(s.get("counts/n", 0))
        entry = {
            "rows": rows,
            "missing": int(s.get("counts/null", 0)),
            "nan": int(s.get("counts/nan", 0)),
            "inf": int(s.get("counts/inf", 0)),
        }
        if name in reference.numeric:
            entry["out_of_range_share"] = _out_of_range(view, name, *reference.value_range(name), entry["inf"])
            if int(s.get("types/string", 0)) or int(s.get("types/object", 0)):
                violations.append(f"column {name!r} is numeric in the reference but received strings")
        else:
            entry["unseen_share"], entry["unseen"] = _unseen_share(view, name, reference.categories(name), rows)
        columns[name] = entry
    return {"columns": columns, "schema_violations": violations}
