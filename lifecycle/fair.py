"""One evaluation set per model: every version is judged on the same holdout rows.

The first registered version's holdout (vigil/holdout.parquet of its run) becomes the
model's fixed evaluation set: the registered model's vigil.holdout_run_id tag names the
run, vigil.holdout_digest its rows. Retraining scores on those rows and keeps them out of
training, so its vigil.metric.* tags compare directly; a version scored on other rows
(trained by hand on other data or another split) is re-scored on them at gate time. Like
is compared with like, which is why the gate's tolerance can stay at 0.

When drift changed the answers themselves (the same inputs now have other labels), the
old rows no longer say which model is right: VIGIL_RETRAIN_REFRESH_HOLDOUT=1 makes a
retraining hold out a share of the recent rows and make them the evaluation set; the
champion is then re-scored on those rows at gate time, so the comparison stays fair.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vigil import artifacts as A

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class HoldoutPair:
    """Candidate and champion on one set of rows; `rows` says which ("fixed holdout", ...)."""

    candidate: float | None
    champion: float | None
    rows: str


def metric_of(version: Any, metric: str) -> float | None:
    """A holdout metric from the version's vigil.metric.* tags, None when absent or unreadable."""
    raw = version.tags.get(f"{A.TAG_METRIC_PREFIX}{metric}")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def digest(frame: "pd.DataFrame") -> str:
    """A content hash of holdout rows (columns and values, not the file's bytes)."""
    import pandas as pd

    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:32]


def fixed_holdout(client: Any, name: str) -> tuple[str, str] | None:
    """(run id, digest) of `name`'s evaluation set, None for a registry made before it existed."""
    tags = client.get_registered_model(name).tags
    run, rows = tags.get(A.TAG_HOLDOUT_RUN), tags.get(A.TAG_HOLDOUT_DIGEST)
    return (run, rows) if run and rows else None


def claim_fixed_holdout(client: Any, name: str, run_id: str, rows: str, replace: bool = False) -> None:
    """Make this run's holdout the model's evaluation set, unless it has one (or `replace`)."""
    if replace or fixed_holdout(client, name) is None:
        client.set_registered_model_tag(name, A.TAG_HOLDOUT_RUN, run_id)
        client.set_registered_model_tag(name, A.TAG_HOLDOUT_DIGEST, rows)


def load_holdout(client: Any, run_id: str) -> "pd.DataFrame":
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(client.download_artifacts(run_id, A.ARTIFACT_HOLDOUT, tmp))


def holdout_pair(client: Any, candidate: Any, champion: Any | None, metric: str) -> HoldoutPair:
    """`metric` of both versions on the model's fixed evaluation set where they can be scored on it."""
    own = HoldoutPair(metric_of(candidate, metric), metric_of(champion, metric) if champion is not None else None,
                      "own holdout")
    if champion is None:
        return own
    fixed = fixed_holdout(client, candidate.name)
    if fixed is None:
        return own
    run_id, rows = fixed
    if all(v.tags.get(A.TAG_HOLDOUT_DIGEST) == rows for v in (candidate, champion)):
        return HoldoutPair(own.candidate, own.champion, "fixed holdout")
    try:
        frame = load_holdout(client, run_id)
        pair = [_on(frame, v, metric, rows) for v in (candidate, champion)]
    except Exception as exc:  # MLflow, pandas and sklearn each raise their own types
        # The evaluation set no longer fits (other features or target) or a model will not
        # load: compare the versions' own holdouts, and say so in the row.
        return HoldoutPair(own.candidate, own.champion, f"own holdouts, fixed one unusable: {exc}"[:120])
    return HoldoutPair(pair[0], pair[1], "fixed holdout, re-scored")


def _on(frame: "pd.DataFrame", version: Any, metric: str, rows: str) -> float | None:
    if version.tags.get(A.TAG_HOLDOUT_DIGEST) == rows:
        return metric_of(version, metric)
    import mlflow.sklearn

    from lifecycle.evaluate import holdout_metrics

    target, task = version.tags[A.TAG_TARGET], version.tags[A.TAG_TASK]
    model = mlflow.sklearn.load_model(f"models:/{version.name}/{version.version}")
    features = list(getattr(model, "feature_names_in_", [c for c in frame.columns if c != target]))
    missing = [c for c in features + [target] if c not in frame.columns]
    if missing:
        raise KeyError(f"the fixed holdout lacks {', '.join(missing)}")
    return holdout_metrics(model, task, frame[features], frame[target]).get(metric)
