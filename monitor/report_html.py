"""HTML building blocks of the drift report: the verdict first, then tables, then plots.

Shared by the monitor's report (monitor/report.py, per version and window) and `vigil drift
--report` (`offline_report`, per file). Plots are matplotlib PNGs embedded in the page, so
the file is self-contained; time axes are dates and times (UTC).
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

COLORS = {"major": "#f8c9c4", "minor": "#fbe7b5", "none": "#ffffff"}
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1200px}"
    "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 9px;text-align:right}"
    "th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}"
    "tr.major td{background:#f8c9c4}tr.minor td{background:#fbe7b5}"
    ".banner{padding:.6em 1em;border-radius:6px;font-size:1.15em;margin:.5em 0}"
    ".banner.major{background:#f8c9c4}.banner.minor{background:#fbe7b5}.banner.none{background:#d8f0d8}"
    ".plots img{margin:4px;border:1px solid #eee}.muted{color:#777}"
)


def page(title: str, body: str) -> str:
    """A whole HTML document."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def when(ts: float | None) -> str:
    """A Unix time as `YYYY-MM-DD HH:MM:SS UTC`."""
    if ts is None:
        return "–"
    return datetime.fromtimestamp(float(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "–" if not np.isfinite(v) else f"{v:.3g}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) else f"{v:.4f}".rstrip("0").rstrip(".") or "0"
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(map(str, value))) or "–"
    return html.escape(str(value))


def banner(result: dict[str, Any], context: str) -> str:
    """The verdict in one line: severity, driving features, prediction drift."""
    level = result.get("severity", "none")
    driving = result.get("driving_features") or []
    pred = result.get("prediction_drift")
    text = {"major": "MAJOR drift — alerts and retraining fire", "minor": "minor drift — dashboard only",
            "none": "no drift"}[level]
    parts = [f"<b>{text}</b> · {context}",
             f"{result.get('drift_share', 0.0):.0%} of the model's importance in major drift"]
    if driving:
        parts.append("driven by " + ", ".join(html.escape(str(d)) for d in driving[:6]) + ("…" if len(driving) > 6 else ""))
    if pred:
        parts.append(f"prediction: {pred['severity']} (PSI {fmt(pred['effect_size'])})")
    return f"<div class='banner {level}'>{' · '.join(parts)}</div>"


def drift_table(result: dict[str, Any]) -> str:
    """Columns by severity then weighted effect (the order compare_window returns), prediction first."""
    head = ("<tr><th>column</th><th>severity</th><th>weight</th><th>PSI</th><th>test</th><th>statistic</th>"
            "<th>p-value</th><th>distance</th><th>rows</th><th>reference rows</th></tr>")
    entries = list(result["features"].values())
    if result.get("prediction_drift"):
        entries.insert(0, dict(result["prediction_drift"], column="prediction (model output)", weight=None))
    rows = "".join(
        f"<tr class='{f['severity']}'><td>{html.escape(str(f['column']))}</td><td>{f['severity']}</td>"
        f"<td>{fmt(f.get('weight'))}</td><td>{fmt(f['effect_size'])}</td><td>{f['method']}</td>"
        f"<td>{fmt(f['statistic'])}</td><td>{fmt(f['p_value'])}</td><td>{fmt(f.get('distance'))}</td>"
        f"<td>{fmt(f['rows'])}</td><td>{fmt(f['reference_rows'])}</td></tr>" for f in entries)
    levels = result.get("psi_levels") or {"minor": 0.1, "major": 0.25}
    note = (f"<p class='muted'>Each test at α = {fmt(result.get('alpha_per_test'))} (the false-alarm rate split over "
            f"the columns); severity needs that and PSI ≥ {fmt(levels['minor'])} (minor) / {fmt(levels['major'])} "
            "(major). distance: normed Wasserstein or Jensen-Shannon.</p>")
    return f"<table>{head}{rows}</table>{note}"


def quality_table(quality: dict[str, Any]) -> str:
    """Label-based quality metrics as a two-column table."""
    if not quality or not quality.get("labels"):
        return "<p class='muted'>No labels joined for this window.</p>"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{fmt(v)}</td></tr>" for k, v in quality.items()
                   if not isinstance(v, (dict, list)))
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def data_quality_table(dq: dict[str, Any]) -> str:
    """Missing, NaN, inf, out-of-range share and unseen categories per feature, then schema violations."""
    head = ("<tr><th>feature</th><th>rows</th><th>missing</th><th>NaN</th><th>inf</th>"
            "<th>out of reference range</th><th>unseen categories</th></tr>")
    rows = []
    for name, c in dq.get("columns", {}).items():
        bad = c["missing"] or c["nan"] or c["inf"] or c.get("out_of_range_share", 0) > 0 or c.get("unseen_share", 0) > 0
        unseen = (f"{c['unseen_share']:.1%} ({fmt(c.get('unseen', []))})" if c.get("unseen_share") else
                  "–" if "unseen_share" not in c else "0")
        oor = f"{c['out_of_range_share']:.1%}" if "out_of_range_share" in c else "–"
        rows.append(f"<tr class='{'minor' if bad else 'none'}'><td>{html.escape(str(name))}</td><td>{c['rows']}</td>"
                    f"<td>{c['missing']}</td><td>{c['nan']}</td><td>{c['inf']}</td><td>{oor}</td><td>{unseen}</td></tr>")
    violations = dq.get("schema_violations") or []
    tail = ("<p><b>Schema:</b> " + "; ".join(html.escape(v) for v in violations) + "</p>") if violations else \
        "<p class='muted'>Schema: as the reference.</p>"
    return f"<table>{head}{''.join(rows)}</table>{tail}"


def png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def feature_plot(ref_view: Any, cur_view: Any, name: str, categorical: bool, title: str) -> str:
    """Reference vs current: category shares, or the two CDFs from the quantile sketches."""
    import matplotlib.pyplot as plt

    from monitor.drift import items

    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if categorical:
        ref, cur = items(ref_view, name), items(cur_view, name)
        keys = sorted(set(ref) | set(cur), key=lambda k: -ref.get(k, 0))[:20]
        rt, ct = sum(ref.values()) or 1, sum(cur.values()) or 1
        x = np.arange(len(keys))
        ax.bar(x - 0.2, [ref.get(k, 0) / rt for k in keys], 0.4, label="reference")
        ax.bar(x + 0.2, [cur.get(k, 0) / ct for k in keys], 0.4, label="current")
        ax.set_xticks(x, keys, rotation=45, fontsize=7)
        ax.set_ylabel("share")
    else:
        grid = np.linspace(0, 1, 101)
        for view, label in ((ref_view, "reference"), (cur_view, "current")):
            col = view.get_column(name)
            dist = col.get_metric("distribution") if col else None
            if dist is not None and dist.kll.value.get_n():
                q = np.asarray(dist.kll.value.get_quantiles(list(grid)), dtype=float)
                ok = np.isfinite(q)
                ax.plot(q[ok], grid[ok], label=label)
        ax.set_ylabel("CDF")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return png(fig)


def plots(ref_view: Any, cur_view: Any, result: dict[str, Any], categorical: Sequence[str], task: str,
          limit: int = 12) -> str:
    """Plots of the prediction and the most severe features (the table's order), at most `limit`."""
    out = []
    if result.get("prediction_drift") and cur_view.get_column("prediction") is not None:
        p = result["prediction_drift"]
        out.append(feature_plot(ref_view, cur_view, "prediction", task == "classification",
                                f"prediction: {p['severity']} (PSI {fmt(p['effect_size'])})"))
    for name, f in list(result["features"].items())[:limit]:
        out.append(feature_plot(ref_view, cur_view, name, name in categorical,
                                f"{name}: {f['severity']} (PSI {fmt(f['effect_size'])})"))
    return f"<div class='plots'>{''.join(out)}</div>"


def timeline(history: list[dict[str, Any]], detections: list[dict[str, Any]], metric: str) -> str:
    """Share in major drift, severity and quality per window over date/time, with ADWIN detections."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.8))
    starts = [datetime.fromtimestamp(h["window_start"], tz=timezone.utc) for h in history]
    ax.plot(starts, [h["drift_share"] for h in history], marker="o", label="importance share in major drift")
    level = {"none": 0.0, "minor": 0.5, "major": 1.0}
    ax.step(starts, [level.get(h.get("severity", "none"), 0.0) for h in history], where="post", color="#c0392b",
            alpha=0.6, label="severity (0 none, .5 minor, 1 major)")
    values = [h["quality"].get(metric) for h in history]
    if any(v is not None for v in values):
        ax.plot(starts, [np.nan if v is None else v for v in values], marker="s", label=f"{metric} (labels)")
    for i, d in enumerate(detections):
        ax.axvline(datetime.fromtimestamp(d["window_start"], tz=timezone.utc), color="red", linestyle="--",
                   label="ADWIN detection" if i == 0 else None)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    ax.set_xlabel("window start (UTC)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, loc="upper left")
    return png(fig)


def offline_report(reference_name: str, reference: Any, verdicts: Sequence[Any]) -> str:
    """`vigil drift --report`: a summary table, then one section per file; most severe first."""
    import matplotlib

    matplotlib.use("Agg")
    from monitor.offline import current_view, read_table

    order = {"major": 0, "minor": 1, "none": 2}
    verdicts = sorted(verdicts, key=lambda v: order[v.result["severity"]])  # stable: file order within a level
    sections = []
    for v in verdicts:
        view = current_view(reference, read_table(v.file))
        r = v.result
        sections.append(
            f"<h2>{html.escape(v.file)}</h2>"
            + banner(r, f"{v.rows} rows vs reference {html.escape(reference_name)}")
            + "<h3>Drift by column</h3>" + drift_table(r)
            + "<h3>Data quality</h3>" + data_quality_table(r["data_quality"])
            + "<h3>Distributions</h3>" + plots(reference.profile(), view, r, reference.categorical, reference.task))
    summary = "".join(f"<tr class='{v.result['severity']}'><td>{html.escape(v.file)}</td><td>{v.result['severity']}</td>"
                      f"<td>{v.rows}</td><td>{v.result['drift_share']:.0%}</td>"
                      f"<td>{fmt(', '.join(v.result['driving_features'][:4]))}</td><td>{v.compute_ms:.1f}</td></tr>"
                      for v in verdicts)
    head = ("<table><tr><th>file</th><th>severity</th><th>rows</th><th>importance in major drift</th>"
            f"<th>driving features</th><th>ms</th></tr>{summary}</table>")
    return page("Vigil drift report", head + "".join(sections))
