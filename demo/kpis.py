"""The demo's prediction-log and business-KPI lines: what was served, labelled and earned.

`log_stats_lines` is `vigil log stats NAME` on the demo's log, which the service's profile
agent (rows) and the monitor (labels) both write under the one VIGIL_PREDICTION_LOG the
demo hands them. `kpi_lines` reads the monitor's `vigil_monitor_kpi_*` metrics (what
Prometheus scrapes) for the served version and the version before it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

KPI_PREFIX = "vigil_monitor_kpi_"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def log_stats_lines(root: Path, name: str) -> list[str]:
    """The `vigil log stats NAME` lines for the log under `root`."""
    from vigil.predlog.query import stats, stats_lines

    rows, _ = stats(root, name)
    return stats_lines(name, rows)


def monitor_kpis(monitor_url: str) -> Samples:
    """The monitor's KPI gauges from its /metrics: metric name -> [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{monitor_url}/metrics", timeout=30).text
    found: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(KPI_PREFIX):
                found[sample.name[len(KPI_PREFIX):]].append((sample.labels, sample.value))
    return found


def _value(samples: Samples, kpi: str, model: str, version: str) -> float | None:
    for labels, value in samples.get(kpi, []):
        if labels.get("model") == model and labels.get("version") == version:
            return None if math.isnan(value) else value
    return None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else (f"{x:+.2f}" if signed else f"{x:.2f}")


def _previous(samples: Samples, model: str, version: str) -> str | None:
    """The newest version below `version` with KPIs (the monitor's own choice of 'previous')."""
    versions = {labels["version"] for labels, _ in samples.get("total_outcome_rate", []) if labels.get("model") == model}
    lower = [v for v in versions if v.isdigit() and version.isdigit() and int(v) < int(version)]
    return max(lower, key=int) if lower else None


def kpi_lines(samples: Samples, model: str, version: str) -> list[str]:
    """Latest-window and all-rows KPIs of `version`, and its difference with the previous version."""
    get = lambda kpi, v=version: _value(samples, kpi, model, v)  # noqa: E731
    if get("total_outcome_rate") is None and get("labels") is None:
        return [f"v{version}: no labels with outcome/value joined yet"]
    lines = [f"v{version} latest window: {get('labels') or 0:.0f} labels, outcome rate {_pct(get('outcome_rate'))}, "
             f"value sum {_num(get('value_sum'))}, value mean {_num(get('value_mean'))}",
             f"v{version} all kept labelled rows: outcome rate {_pct(get('total_outcome_rate'))}, "
             f"value mean {_num(get('total_value_mean'))}"]
    return lines + [_diff_line(samples, model, version, get)]


def _diff_line(samples: Samples, model: str, version: str, get: Any) -> str:
    diffs = {labels["kpi"]: (labels["previous"], value) for labels, value in samples.get("champion_diff", [])
             if labels.get("model") == model and labels.get("champion") == version}
    if diffs:
        previous = next(iter(diffs.values()))[0]
        rate, mean = (diffs.get(k, (None, math.nan))[1] for k in ("outcome_rate", "value_mean"))
        how = "vigil_monitor_kpi_champion_diff"
    else:
        # The monitor caches the champion alias for a minute, so right after a move its
        # champion_diff may still name the old champion: compute the same difference from
        # the per-version totals it exports.
        previous = _previous(samples, model, version)
        if previous is None:
            return f"champion v{version} vs previous: no earlier version with labels"
        rate, mean = (_sub(get(k), get(k, previous)) for k in ("total_outcome_rate", "total_value_mean"))
        how = "from the per-version totals"
    rate = None if rate is None or math.isnan(rate) else rate
    mean = None if mean is None or math.isnan(mean) else mean
    shown = "-" if rate is None else f"{rate * 100:+.1f} pts"
    return f"champion v{version} vs previous v{previous}: outcome rate {shown}, value mean {_num(mean, True)} ({how})"


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
