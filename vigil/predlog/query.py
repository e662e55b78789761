"""Read the prediction log with DuckDB (embedded; Parquet read in place, nothing loaded first).

Views on every connection:

    served          every logged row (union of all part files, columns matched by name)
    labels          every label record posted to the monitor
    latest_labels   the latest label per request_id
    predictions     served LEFT JOIN latest_labels on request_id: label, outcome, value, labelled_at

Files that are not readable prediction-log Parquet are skipped with a warning
(files.scan), so one foreign or truncated file never breaks a query.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.predlog import files
from vigil.predlog.writer import META_COLUMNS, PROBA_PREFIX

LABEL_COLUMNS = ("label", "outcome", "value", "labelled_at")
NOT_FEATURES = set(META_COLUMNS) | {"prediction", "sampling_rate"} | set(LABEL_COLUMNS)
_EMPTY_SERVED = ("SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS batch_id, NULL::VARCHAR AS model, "
                 "NULL::VARCHAR AS version, NULL::VARCHAR AS task, NULL::DOUBLE AS served_at, "
                 "NULL::VARCHAR AS prediction, NULL::DOUBLE AS sampling_rate WHERE false")
_EMPTY_LABELS = ("SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS label, NULL::BOOLEAN AS outcome, "
                 "NULL::DOUBLE AS value, NULL::DOUBLE AS labelled_at WHERE false")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class LogError(Exception):
    """A prediction-log request the user can fix (bad SQL, unknown model, bad option)."""


@dataclass
class LogView:
    """A DuckDB connection with the log's views, and the files skipped while building it."""

    conn: Any
    rows: files.Scan
    labels: files.Scan
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _read(paths: list[Path]) -> str:
    return f"SELECT * FROM read_parquet({_sql_list(paths)}, union_by_name = true, hive_partitioning = false)"


def open_log(root: Path, model: str | None = None, warn: bool = True) -> LogView:
    """A DuckDB connection over the log under `root` (only `model`'s partition if given)."""
    import duckdb

    base = root / files.ROWS / f"model={files.quote(model, safe='')}" if model else root / files.ROWS
    rows = files.scan_dir(base, files.ROWS, warn)
    labels = files.scan(root, files.LABELS, warn)
    conn = duckdb.connect()
    conn.execute(f"CREATE VIEW served AS {_read(rows.files) if rows.files else _EMPTY_SERVED}")
    conn.execute(f"CREATE VIEW labels AS {_read(labels.files) if labels.files else _EMPTY_LABELS}")
    conn.execute(
        "CREATE VIEW latest_labels AS SELECT request_id, label, outcome, value, labelled_at FROM labels"
        " QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY labelled_at DESC) = 1"
    )
    conn.execute(
        "CREATE VIEW predictions AS SELECT s.*, l.label, l.outcome, l.value, l.labelled_at"
        " FROM served s LEFT JOIN latest_labels l ON s.request_id = l.request_id"
    )
    return LogView(conn, rows, labels, rows.skipped + labels.skipped)


def query(root: Path, sql: str) -> tuple["Any", LogView]:
    """Run `sql` against the views; returns (pandas DataFrame, the view with skipped files)."""
    import duckdb

    view = open_log(root)
    try:
        return view.conn.execute(sql).fetchdf(), view
    except duckdb.Error as exc:
        raise LogError(f"query failed: {str(exc).strip().splitlines()[0]}") from None


def parse_since(text: str) -> float:
    """'7d', '12h', '30m', '90s', '2w' as seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise LogError(f"--since must look like 7d, 12h, 30m, 90s or 2w, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def feature_columns(view: LogView) -> list[str]:
    """The model's feature columns, in the order the log stores them."""
    names = [r[0] for r in view.conn.execute("DESCRIBE served").fetchall()]
    return [n for n in names if n not in NOT_FEATURES and not n.startswith(PROBA_PREFIX)]


def _target_type(view: LogView) -> str:
    """DuckDB type to cast the text labels to: the type of the predictions (or DOUBLE)."""
    rows = dict((r[0], r[1]) for r in view.conn.execute("DESCRIBE served").fetchall())
    task = view.conn.execute("SELECT any_value(task) FROM served").fetchone()[0]
    kind = rows.get("prediction", "VARCHAR")
    if task == "regression":
        return "DOUBLE"
    return kind if kind in ("BIGINT", "INTEGER", "DOUBLE", "BOOLEAN") else "VARCHAR"


@dataclass
class Export:
    path: Path
    rows: int
    columns: list[str]
    skipped: list[tuple[Path, str]]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def export(root: Path, model: str, target: str, out: Path, since: str | None = None,
           labelled: bool = False, now: float | None = None) -> Export:
    """Write `model`'s logged rows as features + `target` (the label) to .parquet or .csv."""
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise LogError(f"--out must end in .parquet or .csv, got {out.name!r}")
    view = open_log(root, model)
    if not view.rows.files:
        raise LogError(f"no logged rows for model {model!r} under {root}")
    features = feature_columns(view)
    if target in features:
        raise LogError(f"target {target!r} is also a feature column of {model!r}")
    where = ["model = $model"]
    params: dict[str, Any] = {"model": model}
    if since:
        where.append("served_at >= $cutoff")
        params["cutoff"] = (time.time() if now is None else now) - parse_since(since)
    if labelled:
        where.append("label IS NOT NULL")
    cast = _target_type(view)
    select = ", ".join([_quote_ident(f) for f in features] + [f"TRY_CAST(label AS {cast}) AS {_quote_ident(target)}"])
    sql = f"SELECT {select} FROM predictions WHERE {' AND '.join(where)} ORDER BY served_at, request_id"
    frame = view.conn.execute(sql, params).fetchdf()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return Export(out, len(frame), list(frame.columns), view.skipped)


def stats(root: Path, model: str) -> tuple[list[dict[str, Any]], LogView]:
    """Per version: rows logged, rows estimated served (re-weighted), labelled share, span."""
    view = open_log(root, model)
    rows = view.conn.execute(
        "SELECT version, COUNT(*) AS rows, SUM(1.0 / sampling_rate) AS estimated_served,"
        " COUNT(label) AS labelled, COUNT(outcome) AS with_outcome, AVG(CAST(outcome AS DOUBLE)) AS outcome_rate,"
        " SUM(value) AS value_sum, MIN(served_at) AS first, MAX(served_at) AS last"
        " FROM predictions WHERE model = $model GROUP BY version ORDER BY TRY_CAST(version AS BIGINT), version",
        {"model": model},
    ).fetchall()
    keys = ("version", "rows", "estimated_served", "labelled", "with_outcome", "outcome_rate", "value_sum", "first", "last")
    out = []
    for r in rows:
        entry = dict(zip(keys, r))
        entry["labelled_share"] = entry["labelled"] / entry["rows"] if entry["rows"] else 0.0
        out.append(entry)
    return out, view


def _ts(value: Any) -> str:
    return "-" if value is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))


def stats_lines(name: str, rows: list[dict[str, Any]]) -> list[str]:
    """What `vigil log stats NAME` prints for vigil.predlog.query.stats rows (`vigil log stats`; the demo prints it too)."""
    if not rows:
        return [f"{name}: no rows in the prediction log"]
    total = sum(r["rows"] for r in rows)
    labelled = sum(r["labelled"] for r in rows)
    lines = [f"{name}: {total} rows logged, {labelled} labelled ({labelled / total:.1%})"]
    for r in rows:
        rate = "-" if r["outcome_rate"] is None else f"{r['outcome_rate']:.1%}"
        value = "-" if r["value_sum"] is None else f"{r['value_sum']:.4g}"
        lines.append(f"  v{r['version']}: {r['rows']} rows (~{r['estimated_served']:.0f} served), "
                     f"{r['labelled']} labelled ({r['labelled_share']:.1%}), outcome rate {rate}, value {value}, "
                     f"{_ts(r['first'])} .. {_ts(r['last'])} UTC")
    return lines
