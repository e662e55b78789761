"""The HTML drift report: one self-contained page with embedded PNG plots.

`write_report` asks the running monitor (`GET {VIGIL_MONITOR_URL}/report`); when none
answers it opens the monitor's persisted state directly and renders the same page, so a
report can be made after the monitor stopped.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor.state import Monitor
from vigil.auth import auth_headers
from vigil.config import Settings


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def _feature_plot(ref_view: Any, cur_view: Any, name: str, categorical: bool, title: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if categorical:
        def counts(view: Any) -> dict[str, float]:
            m = view.get_column(name).get_metric("frequent_items") if view.get_column(name) else None
            items = m.to_summary_dict().get("frequent_strings", []) if m else []
            total = sum(i.est for i in items) or 1
            return {i.value: i.est / total for i in items}

        ref, cur = counts(ref_view), counts(cur_view)
        keys = sorted(set(ref) | set(cur))[:20]
        x = np.arange(len(keys))
        ax.bar(x - 0.2, [ref.get(k, 0) for k in keys], 0.4, label="reference")
        ax.bar(x + 0.2, [cur.get(k, 0) for k in keys], 0.4, label="current")
        ax.set_xticks(x, keys, rotation=45, fontsize=7)
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
    return _png(fig)


def _timeline(history: list[dict[str, Any]], detections: list[dict[str, Any]], metric: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 2.8))
    starts = [h["window_start"] for h in history]
    ax.plot(starts, [h["drift_share"] for h in history], marker="o", label="share of drifted features")
    values = [h["quality"].get(metric) for h in history]
    if any(v is not None for v in values):
        ax.plot(starts, [np.nan if v is None else v for v in values], marker="s", label=f"{metric} (labels)")
    for i, d in enumerate(detections):
        ax.axvline(d["window_start"], color="red", linestyle="--", label="ADWIN detection" if i == 0 else None)
    ax.set_xlabel("window start (unix s)")
    ax.legend(fontsize=7)
    return _png(fig)


def _drift_table(report: dict[str, Any]) -> str:
    head = "<tr><th>feature</th><th>method</th><th>statistic</th><th>p-value</th><th>effect size</th><th>drift</th></tr>"
    rows = []
    for name, f in report["features"].items():
        fmt = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
        cls = ' class="drift"' if f["drift"] else ""
        rows.append(
            f"<tr{cls}><td>{html.escape(name)}</td><td>{f['method']}</td><td>{fmt(f['statistic'])}</td>"
            f"<td>{fmt(f['p_value'])}</td><td>{fmt(f['effect_size'])}</td><td>{'DRIFT' if f['drift'] else 'ok'}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _version_section(monitor: Monitor, entry: dict[str, Any]) -> str:
    model, version, latest = entry["model"], entry["version"], entry["latest"]
    title = f"<h2>{html.escape(model)} v{html.escape(version)} ({entry['task']})</h2>"
    if latest is None:
        return title + "<p>No traffic yet.</p>"
    ref = monitor.references.get(model, version)
    view = monitor.window_view(model, version, latest["window_start"])
    verdict = "DATASET DRIFT" if latest["dataset_drift"] else "no dataset drift"
    pred = latest["prediction_drift"]
    plots = [
        _feature_plot(ref.profile(), view, name, name in ref.categorical, f"{name}: {'DRIFT' if f['drift'] else 'ok'}")
        for name, f in latest["features"].items()
    ]
    plots.append(_feature_plot(ref.profile(), view, "prediction", ref.task == "classification", "prediction"))
    metric = "accuracy" if entry["task"] == "classification" else "r2"
    dq = latest["data_quality"]
    return (
        f"{title}<p class='verdict'>Latest window ({latest['rows']} rows, starting {time.ctime(latest['window_start'])}):"
        f" <b>{verdict}</b> — {latest['drift_share']:.0%} of features drifted; prediction drift:"
        f" {'yes' if pred and pred['drift'] else 'no'}.</p>"
        f"{_drift_table(latest)}<div class='plots'>{''.join(plots)}</div>"
        f"<h3>Over time</h3>{_timeline(entry['history'], entry['concept_drift'], metric)}"
        f"<p>Concept-drift detections (ADWIN): {len(entry['concept_drift'])}"
        f"{' at rows ' + ', '.join(str(d['row_index']) for d in entry['concept_drift']) if entry['concept_drift'] else ''}.</p>"
        f"<h3>Quality (latest window)</h3><pre>{html.escape(str(latest['quality']))}</pre>"
        f"<h3>Data quality (latest window)</h3><pre>{html.escape(str(dq))}</pre>"
    )


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.1%}" if pct == "diff" else f"{value:.1%}" if pct else f"{value:.4g}"


def _kpi_section(monitor: Monitor, model: str | None) -> str:
    """Business KPIs per version (labels with outcome / value) and champion vs previous."""
    from monitor.kpi import kpi_report

    parts = []
    for entry in kpi_report(monitor, model):
        head = "<tr><th>version</th><th>labels</th><th>outcome rate</th><th>value sum</th><th>value mean</th></tr>"
        rows = "".join(
            f"<tr><td>v{html.escape(v['version'])}</td><td>{v['total']['labels']}</td>"
            f"<td>{_fmt(v['total']['outcome_rate'], True)}</td><td>{_fmt(v['total']['value_sum'])}</td>"
            f"<td>{_fmt(v['total']['value_mean'])}</td></tr>" for v in entry["versions"])
        cmp_ = entry["champion_vs_previous"]
        line = ("<p>Only one labelled version: nothing to compare yet.</p>" if cmp_ is None else
                f"<p class='verdict'>Champion v{html.escape(cmp_['champion'])} vs previous v{html.escape(cmp_['previous'])}:"
                f" outcome rate {_fmt(cmp_['outcome_rate_diff'], 'diff')}, value per label {_fmt(cmp_['value_mean_diff'])}.</p>")
        parts.append(f"<h2>Business KPIs: {html.escape(entry['model'])}</h2><table>{head}{rows}</table>{line}")
    return "".join(parts)


def render_report(monitor: Monitor, model: str | None = None) -> str:
    """The whole report page for every version (or one model)."""
    import matplotlib

    matplotlib.use("Agg")
    sections = [_version_section(monitor, e) for e in monitor.drift(model=model)["versions"]]
    body = ("".join(sections) or "<p>The monitor has not received any traffic yet.</p>") + _kpi_section(monitor, model)
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 8px}tr.drift td{background:#fdd}.plots img{margin:4px}"
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Vigil drift report</title><style>{style}</style></head><body><h1>Vigil drift report</h1>{body}</body></html>"


def write_report(settings: Settings, out: Path, model: str | None = None) -> Path:
    """Save the report to `out`: from the running monitor, else from its persisted state."""
    import requests

    out = Path(out)
    try:
        response = requests.get(f"{settings.monitor_url.rstrip('/')}/report", params={"model": model} if model else None,
                                timeout=60, verify=settings.tls_verify, headers=auth_headers(settings))
        if response.status_code in (401, 403):
            raise PermissionError(f"the monitor at {settings.monitor_url} refused the request (HTTP "
                                  f"{response.status_code}): set VIGIL_API_TOKEN or VIGIL_API_TOKEN_FILE to its API token")
        response.raise_for_status()
        page = response.text
    except requests.exceptions.SSLError as exc:  # a ConnectionError too, but no reason to fall back to local state
        raise PermissionError(f"cannot verify the monitor at {settings.monitor_url} over TLS ({exc}): set "
                              "VIGIL_TLS_CA_FILE to the CA bundle that signed its certificate") from None
    except requests.ConnectionError:
        if not (settings.monitor_home / "monitor.db").exists():
            raise FileNotFoundError(f"no monitor answers at {settings.monitor_url} and no saved state in {settings.monitor_home}") from None
        monitor = Monitor(settings)
        try:
            page = render_report(monitor, model)
        finally:
            monitor.store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
