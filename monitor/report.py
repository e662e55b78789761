"""The HTML drift report: one self-contained page with embedded PNG plots.

`write_report` asks the running monitor (`GET {VIGIL_MONITOR_URL}/report`); when none
answers it opens the monitor's persisted state directly and renders the same page, so a
report can be made after the monitor stopped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from monitor import report_html as rh
from monitor.state import Monitor
from vigil.auth import auth_headers
from vigil.config import Settings


def _detections(concept: list[dict[str, Any]]) -> str:
    return "".join(f"<br>row {d['row_index']} at {rh.when(d['timestamp'])}" for d in concept[:20])


def _version_section(monitor: Monitor, entry: dict[str, Any]) -> str:
    model, version, latest = entry["model"], entry["version"], entry["latest"]
    title = f"<h2>{html.escape(model)} v{html.escape(version)} ({entry['task']})</h2>"
    if latest is None:
        return title + "<p>No traffic yet.</p>"
    ref = monitor.references.get(model, version)
    view = monitor.window_view(model, version, latest["window_start"])
    metric = "accuracy" if entry["task"] == "classification" else "r2"
    concept = entry["concept_drift"]
    context = f"latest window {rh.when(latest['window_start'])} – {rh.when(latest['window_end'])}, {latest['rows']} rows"
    return (
        f"{title}{rh.banner(latest, context)}"
        f"<h3>Drift by column (latest window)</h3>{rh.drift_table(latest)}"
        f"<h3>Quality (latest window)</h3>{rh.quality_table(latest['quality'])}"
        f"<h3>Data quality (latest window)</h3>{rh.data_quality_table(latest['data_quality'])}"
        f"<h3>Distributions</h3>{rh.plots(ref.profile(), view, latest, ref.categorical, ref.task)}"
        f"<h3>Over time</h3>{rh.timeline(entry['history'], concept, metric)}"
        f"<p>Concept-drift detections (ADWIN): {len(concept)}"
        f"{_detections(concept)}</p>"
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
    return rh.page("Vigil drift report", body)


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
