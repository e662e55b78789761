"""`vigil retrain NAME`: retrain on reference + recent labelled data, convert, judge, promote.

The new version is trained with the same estimator and task as the version it
replaces (the champion, else the latest), on that version's reference sample
(vigil/reference.parquet) plus the recent labelled rows, and scored on the model's
fixed evaluation set (lifecycle/fair.py; its rows are kept out of training), so its
holdout metrics compare with every earlier version's; then converted (parity),
scored against the champion on the recent rows, promoted to staging, and to
production only when the gate passes and auto-promotion is on. Its MLflow run is
tagged with what caused it (the drift evidence: windows, features, scores).
Without --data / VIGIL_RETRAIN_DATA the recent rows are the prediction log's labelled
rows of the model (`vigil log export NAME --labelled`): what was served and then labelled.
One retraining per model at a time, enforced by a lock file under $VIGIL_HOME.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from lifecycle import gate as gate_mod
from lifecycle import moves
from lifecycle import stages as S
from lifecycle.audit import lifecycle_dir
from lifecycle.errors import GateRefused, LifecycleError, RetrainBusy, TrainError
from vigil import artifacts as A
from vigil.config import Settings
from vigil.registry import connect

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RetrainResult:
    """What one retraining did; `summary()` is what the CLI prints."""

    name: str
    base_version: str
    version: str
    run_id: str
    stage: str = S.DEVELOPMENT
    converted: bool = False
    conversion_error: str = ""
    metric: str = ""
    candidate_recent: float | None = None
    champion_recent: float | None = None
    recent_rows: int = 0
    recent_source: str = ""
    verdict: gate_mod.Verdict | None = None
    moves: list[S.Move] = field(default_factory=list)

    def summary(self) -> str:
        source = f" from {self.recent_source}" if self.recent_source else ""
        lines = [f"retrained {self.name} v{self.version} from v{self.base_version} + {self.recent_rows} recent rows"
                 f"{source} (run {self.run_id})"]
        if not self.converted:
            lines.append(f"not converted, stays in development: {self.conversion_error}")
        if self.candidate_recent is not None:
            champ = "-" if self.champion_recent is None else f"{self.champion_recent:.4f}"
            lines.append(f"recent-data {self.metric}: v{self.version} {self.candidate_recent:.4f} vs champion {champ}")
        lines.append(f"stage: {self.stage}")
        return "\n".join(lines)


@contextlib.contextmanager
def retrain_lock(settings: Settings, name: str) -> Iterator[Path]:
    """Hold the per-model retraining lock; RetrainBusy if a live process holds it."""
    path = lifecycle_dir(settings) / f"retrain-{name}.lock"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            holder = _lock_holder(path)
            if _alive(holder) or (holder is None and _younger_than(path, 10.0)):  # None: being written now
                raise RetrainBusy(f"a retraining of {name} is already running (pid {holder}, lock {path})") from None
            path.unlink(missing_ok=True)  # stale: its process died without cleaning up
    else:
        raise RetrainBusy(f"could not take the retraining lock {path}")
    try:
        os.write(fd, json.dumps({"pid": os.getpid(), "at": time.time()}).encode())
        os.close(fd)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _lock_holder(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def retrain(
    settings: Settings,
    name: str,
    recent: Path | None = None,
    auto_promote: bool = False,
    evidence: dict[str, Any] | None = None,
    actor: str | None = None,
) -> RetrainResult:
    """Retrain `name` on its reference data plus `recent`.

    `recent` defaults to VIGIL_RETRAIN_DATA, else the prediction log's labelled rows.
    Raises LifecycleError (or RetrainBusy) for anything the user can fix.
    """
    source = recent or (Path(settings.retrain_data) if settings.retrain_data else None)
    if source is None and settings.prediction_log_dir is None:
        raise LifecycleError("retraining needs recent labelled data: pass a CSV or directory, set VIGIL_RETRAIN_DATA, "
                             "or turn the prediction log on (VIGIL_PREDICTION_LOG)")
    with retrain_lock(settings, name):
        return _retrain_locked(settings, name, source, auto_promote, evidence or {}, actor)


def _retrain_locked(
    settings: Settings, name: str, given: Path | None, auto_promote: bool, evidence: dict[str, Any], actor: str | None
) -> RetrainResult:
    from lifecycle.datasets import split_target
    from lifecycle.training import train

    client = connect(settings)
    model = S.registered_model(client, name)
    champion = model.aliases.get(S.ALIAS_OF[S.PRODUCTION])
    base = client.get_model_version(name, str(champion)) if champion is not None else _latest(client, name)
    task, target = base.tags.get(A.TAG_TASK), base.tags.get(A.TAG_TARGET)
    if not task or not target:
        raise LifecycleError(f"{name} v{base.version} lacks {A.TAG_TASK}/{A.TAG_TARGET} tags; was it made by `vigil train`?")
    reference = _reference(client, base)
    features = [c for c in reference.columns if c not in _reserved(target) and not c.startswith(A.REFERENCE_PROBA_PREFIX)]
    if given is None:
        source, fresh = _recent_from_log(settings, name, features, target)
    else:
        source, fresh = str(given), load_recent(Path(given), features, target)
    fresh_train = fresh
    if settings.retrain_refresh_holdout:
        fresh_train, holdout = _split_recent(fresh, target, task)
    else:
        holdout = _fixed_holdout(client, base)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / f"retrain-{name}.csv"
        _training_rows(reference[features + [target]], fresh_train, holdout[features + [target]]).to_csv(csv, index=False)
        try:
            trained = train(settings, csv=csv, target=target, name=name, holdout=holdout[features + [target]],
                            estimator=base.tags.get(A.TAG_ESTIMATOR, "auto"), task=task)
        except TrainError as exc:
            raise LifecycleError(f"retraining {name} failed: {exc}") from None
    result = RetrainResult(name, str(base.version), trained.version, trained.run_id, recent_rows=len(fresh),
                           recent_source=source)
    if settings.retrain_refresh_holdout:
        from lifecycle import fair

        rows = client.get_model_version(name, trained.version).tags[A.TAG_HOLDOUT_DIGEST]
        fair.claim_fixed_holdout(client, name, trained.run_id, rows, replace=True)
    _link_evidence(client, result, source, evidence)
    try:
        from converter import ConversionError, convert_version
    except ImportError as exc:  # the converter is optional at import time, never silently skipped
        raise LifecycleError(f"cannot convert the retrained version: converter unavailable ({exc})") from None
    try:
        convert_version(settings, f"models:/{name}/{trained.version}", progress=False)
        result.converted = True
    except ConversionError as exc:
        result.conversion_error = str(exc)
        return result
    X, y, _ = split_target(fresh, target, task, source=source)
    _score_recent(settings, client, result, champion, X, y, task)
    reason = f"retrained on drift: {evidence.get('reason', 'manual retraining')}"[: S.MAX_REASON_CHARS]
    result.moves.append(moves.promote(settings, name, trained.version, S.STAGING, reason, actor=actor, kind=S.RETRAIN))
    result.stage = S.STAGING
    recent_pair = (result.candidate_recent, result.champion_recent) if result.champion_recent is not None else None
    candidate = client.get_model_version(name, trained.version)
    current = client.get_model_version(name, str(champion)) if champion is not None else None
    result.verdict = gate_mod.evaluate(settings, candidate, current, recent_pair)  # type: ignore[arg-type]
    if auto_promote and result.verdict.passed:
        try:
            result.moves.append(moves.promote(settings, name, trained.version, S.PRODUCTION, reason, actor=actor,
                                              kind=S.RETRAIN, recent=recent_pair))  # type: ignore[arg-type]
            result.stage = S.PRODUCTION
        except GateRefused as exc:  # the champion changed meanwhile: stay in staging
            result.verdict = exc.verdict  # type: ignore[assignment]
    return result


def load_recent(source: Path, features: list[str], target: str) -> "pd.DataFrame":
    """Recent labelled rows from a CSV, or every CSV/Parquet file in a directory."""
    import pandas as pd

    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".csv", ".parquet"))
        if not files:
            raise LifecycleError(f"no .csv or .parquet files in {source}")
    elif source.is_file():
        files = [source]
    else:
        raise LifecycleError(f"recent data not found: {source}")
    frames = []
    for path in files:
        try:
            frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        except Exception as exc:  # pandas/pyarrow raise many types for a bad file
            raise LifecycleError(f"cannot read {path}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None
        missing = [c for c in features + [target] if c not in frame.columns]
        if missing:
            raise LifecycleError(f"{path} lacks column(s) {', '.join(map(repr, missing))}; "
                                 f"recent data needs the features and the target {target!r}")
        frames.append(frame[features + [target]])
    fresh = pd.concat(frames, ignore_index=True)
    if fresh.empty:
        raise LifecycleError(f"{source} has no rows")
    return fresh


def _recent_from_log(settings: Settings, name: str, features: list[str], target: str) -> tuple[str, "pd.DataFrame"]:
    """The prediction log's labelled rows of `name` (as `vigil log export NAME --labelled`)."""
    from vigil.predlog.query import LogError, export

    root = settings.prediction_log_dir
    assert root is not None  # checked by retrain()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            exported = export(root, name, target, Path(tmp) / f"{name}-labelled.parquet", labelled=True)
        except LogError as exc:
            raise LifecycleError(f"no recent data given (--data / VIGIL_RETRAIN_DATA) and the prediction log "
                                 f"cannot supply it: {exc}") from None
        # A label that does not parse as the model's target type exports as missing: drop
        # it rather than fail the whole retraining on one bad label.
        fresh = load_recent(exported.path, features, target) if exported.rows else None
    if fresh is None or fresh[target].isna().all():
        raise LifecycleError(f"the prediction log under {root} has no labelled rows of {name!r}; post labels to "
                             f"the monitor (/v1/labels) or pass recent data with --data / VIGIL_RETRAIN_DATA")
    return f"prediction log {root}", fresh.dropna(subset=[target]).reset_index(drop=True)


def _latest(client: Any, name: str) -> Any:
    found = client.search_model_versions(f"name = '{name}'")
    if not found:
        raise LifecycleError(f"{name} has no versions to retrain from")
    return max(found, key=lambda v: int(v.version))


def _reserved(target: str) -> set[str]:
    return {target, A.REFERENCE_PREDICTION_COLUMN}


def _reference(client: Any, version: Any) -> "pd.DataFrame":
    import pandas as pd

    run_id = version.tags.get(A.TAG_RUN_ID) or version.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return pd.read_parquet(client.download_artifacts(run_id, A.ARTIFACT_REFERENCE, tmp))
        except Exception as exc:
            raise LifecycleError(f"cannot read {A.ARTIFACT_REFERENCE} of {version.name} v{version.version}: {exc}") from None


def _fixed_holdout(client: Any, base: Any) -> "pd.DataFrame":
    """The model's evaluation set; a registry older than it adopts the base version's holdout."""
    from lifecycle import fair

    fixed = fair.fixed_holdout(client, base.name)
    run_id = fixed[0] if fixed else (base.tags.get(A.TAG_RUN_ID) or base.run_id)
    try:
        frame = fair.load_holdout(client, run_id)
    except Exception as exc:
        raise LifecycleError(f"cannot read the evaluation set {A.ARTIFACT_HOLDOUT} of run {run_id}: {exc}") from None
    fair.claim_fixed_holdout(client, base.name, run_id, fair.digest(frame))
    return frame


def _split_recent(fresh: "pd.DataFrame", target: str, task: str) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(rows to train on, held-out rows that become the evaluation set): 30%, stratified when possible."""
    from sklearn.model_selection import train_test_split

    counts = fresh[target].value_counts()
    stratify = fresh[target] if task == A.TASK_CLASSIFICATION and counts.min() >= 2 else None
    try:
        train_rows, held = train_test_split(fresh, test_size=0.3, random_state=0, stratify=stratify)
    except ValueError as exc:
        raise LifecycleError(f"cannot hold out evaluation rows from {len(fresh)} recent rows: {exc}") from None
    return train_rows.reset_index(drop=True), held.reset_index(drop=True)


def _training_rows(reference: "pd.DataFrame", fresh: "pd.DataFrame", holdout: "pd.DataFrame") -> "pd.DataFrame":
    """Reference + recent rows, minus any that repeat an evaluation row (scoring on trained rows flatters)."""
    import pandas as pd

    rows = pd.concat([reference, fresh], ignore_index=True)
    seen = set(pd.util.hash_pandas_object(holdout, index=False))
    keep = [h not in seen for h in pd.util.hash_pandas_object(rows.astype(holdout.dtypes.to_dict()), index=False)]
    return rows[keep].reset_index(drop=True)


def _link_evidence(client: Any, result: RetrainResult, source: str, evidence: dict[str, Any]) -> None:
    """Tag the retraining run (and version) with what caused it."""
    tags = {
        "vigil.retrain.base_version": result.base_version,
        "vigil.retrain.trigger": "drift" if evidence else "manual",
        "vigil.retrain.recent_source": source,
        "vigil.retrain.recent_rows": str(result.recent_rows),
    }
    if evidence:
        tags["vigil.drift.windows"] = ",".join(map(str, evidence.get("windows", [])))
        tags["vigil.drift.features"] = ",".join(evidence.get("features", []))
        tags["vigil.drift.share"] = ",".join(f"{s:.3f}" for s in evidence.get("drift_share", []))
    for key, value in tags.items():
        client.set_tag(result.run_id, key, value[:5000])
    client.set_model_version_tag(result.name, result.version, "vigil.retrain.base_version", result.base_version)
    if evidence:
        client.log_dict(result.run_id, evidence, "vigil/retrain/evidence.json")


def _score_recent(
    settings: Settings, client: Any, result: RetrainResult, champion: Any, X: Any, y: Any, task: str
) -> None:
    """Both models on the same recent rows; logged as metrics on the retraining run."""
    import mlflow.sklearn

    from lifecycle.evaluate import holdout_metrics

    candidate = client.get_model_version(result.name, result.version)
    result.metric = gate_mod.gate_metric(settings, candidate)
    new_model = mlflow.sklearn.load_model(f"models:/{result.name}/{result.version}")
    result.candidate_recent = holdout_metrics(new_model, task, X, y).get(result.metric)
    if champion is not None:
        old_model = mlflow.sklearn.load_model(f"models:/{result.name}/{champion}")
        result.champion_recent = holdout_metrics(old_model, task, X, y).get(result.metric)
    for key, value in (("recent_" + result.metric, result.candidate_recent),
                       ("champion_recent_" + result.metric, result.champion_recent)):
        if value is not None:
            client.log_metric(result.run_id, key, value)
