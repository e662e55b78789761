"""What a registered model version carries, by name: run artifacts and version tags.

`vigil train` (lifecycle/) writes the first half, `vigil convert` (converter/) the
second, the service and the monitor read them. Keeping every name here means the
writers and readers cannot drift apart.

Run artifacts (on the MLflow run that produced the version):

    model/                     the MLflow sklearn model (signature + input example). In
                               MLflow 3 this is a LoggedModel named "model", stored outside
                               the run's artifacts: load it as models:/<name>/<version>
                               (the version's `source` is models:/m-<id>)
    vigil/reference.parquet    reference sample of the training rows: feature columns,
                               the target column, `prediction`, and for classifiers one
                               `proba_<class>` column per class (for drift later)
    vigil/holdout.parquet      held-out rows (features + target) for parity and metrics
    vigil/onnx/model.onnx      the converted model            (written by the converter)
    vigil/onnx/schema.json     serving schema, see `ServingSchema` in vigil/schema.py
    vigil/onnx/parity.json     the parity report
    vigil/importance.json      permutation importance of each feature on the holdout rows
                               ({"importance": {feature: mean score drop}, ...})

Model version tags (all strings):
"""

from __future__ import annotations

ARTIFACT_MODEL = "model"
ARTIFACT_REFERENCE = "vigil/reference.parquet"
ARTIFACT_HOLDOUT = "vigil/holdout.parquet"
ARTIFACT_ONNX_DIR = "vigil/onnx"
ONNX_FILE = "model.onnx"
SCHEMA_FILE = "schema.json"
PARITY_FILE = "parity.json"
ARTIFACT_IMPORTANCE = "vigil/importance.json"

# Written by `vigil train`.
TAG_TASK = "vigil.task"  # "classification" | "regression"
TAG_TARGET = "vigil.target"  # name of the target column
TAG_DATASET = "vigil.dataset"  # "iris", "csv:<file name>", ...
TAG_ESTIMATOR = "vigil.estimator"  # the estimator's key, e.g. "logreg", "pipeline"
TAG_RUN_ID = "vigil.run_id"  # run holding the artifacts above
TAG_METRIC_PREFIX = "vigil.metric."  # + holdout metric name, e.g. vigil.metric.accuracy
TAG_PRIMARY_METRIC = "vigil.primary_metric"  # "accuracy" (classifiers) | "r2" (regressors)
# On a version: a hash of the holdout rows its metrics were scored on. On the registered
# model: the run and hash of its fixed evaluation set (the first version's holdout).
TAG_HOLDOUT_DIGEST = "vigil.holdout_digest"
TAG_HOLDOUT_RUN = "vigil.holdout_run_id"

# Written by `vigil convert`.
TAG_ONNX_URI = "vigil.onnx_uri"  # artifact URI of the vigil/onnx folder
TAG_PARITY = "vigil.parity"  # "passed" | "failed"
TAG_PARITY_MAX_ABS_ERR = "vigil.parity_max_abs_err"
TAG_OPSET = "vigil.opset"
TAG_SERVABLE = "vigil.servable"  # "true" | "false"
TAG_SERVABLE_REASON = "vigil.servable_reason"  # why not, in one sentence

TASK_CLASSIFICATION = "classification"
TASK_REGRESSION = "regression"

REFERENCE_PREDICTION_COLUMN = "prediction"
REFERENCE_PROBA_PREFIX = "proba_"
