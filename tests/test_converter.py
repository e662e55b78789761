"""Converter: sklearn -> ONNX parity over the supported estimators, and the MLflow round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import GradientBoostingRegressor, IsolationForest, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split

from converter import (
    ConversionError,
    check_parity,
    convert_and_check,
    convert_estimator,
    convert_version,
    onnx_feed,
    onnx_layout,
)
from vigil import artifacts as A
from vigil.config import load
from vigil.registry import ModelRef, RegistryError, connect, ensure_experiment
from vigil.schema import Feature, OnnxInput, ServingSchema

from estimator_cases import CASES, C, R, _features, _mixed, _mixed_pipeline, _toy  # noqa: E402

# ---------------------------------------------------------------- pure core


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:.*probability:FutureWarning")  # SVC(probability=True), sklearn 1.9
@pytest.mark.parametrize("case", list(CASES))
def test_supported_estimators_pass_parity(case: str) -> None:
    load_data, make, task = CASES[case]
    X, y = load_data()
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=0)
    estimator = make().fit(X_train, y_train)

    result = convert_and_check(estimator, _features(X), task, X_test)

    parity = result.parity
    assert parity.passed, parity.reason
    assert parity.rows == len(X_test)
    assert parity.max_abs_err <= 1e-5 or parity.max_rel_err <= 1e-6
    schema = result.schema
    assert 9 <= schema.opset <= 17 and parity.opset == schema.opset  # pinned ceiling holds
    if task == C:
        assert parity.labels_match is True
        assert schema.classes == [c.item() if hasattr(c, "item") else c for c in estimator.classes_]
        assert all(type(c) in (int, str) for c in schema.classes)
        assert schema.probability_output
    else:
        assert schema.probability_output is None and schema.classes == []
    # ONNX outputs named in the schema exist in the graph.
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    assert schema.label_output in {o.name for o in session.get_outputs()}


def test_layout_numeric_single_input_strings_per_column() -> None:
    numeric = [Feature("a", "number"), Feature("b", "integer")]
    assert onnx_layout(LogisticRegression(), numeric, "float64") == [OnnxInput("X", "float64", ["a", "b"])]
    X, _ = _mixed(False)
    layout = onnx_layout(_mixed_pipeline(Ridge()), _features(X), "float32")
    assert [(i.name, i.type, i.columns) for i in layout] == [
        ("height (cm)", "float32", ["height (cm)"]), ("visits", "int64", ["visits"]),
        ("color", "string", ["color"]), ("size", "string", ["size"]),
    ]


def test_tree_models_get_float32_input_linear_models_float64() -> None:
    X, y = _toy("iris")
    forest = convert_and_check(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), _features(X), C, X)
    linear = convert_and_check(LogisticRegression(max_iter=500).fit(X, y), _features(X), C, X)
    assert forest.schema.onnx_inputs[0].type == "float32"
    assert linear.schema.onnx_inputs[0].type == "float64"


def test_scaled_tree_pipeline_gets_float64_input() -> None:
    X, y = _mixed(False, 400)
    model = _mixed_pipeline(RandomForestClassifier(n_estimators=20, random_state=0)).fit(X, y)
    result = convert_and_check(model, _features(X), C, X)
    assert result.parity.passed and result.schema.onnx_inputs[0].type == "float64"


def test_label_ties_are_excused_but_real_mismatches_are_not() -> None:
    from converter.parity import _label_mismatches

    out = {
        "sk_label": np.array(["a", "a", "a"]),
        "ort_label": np.array(["b", "b", "a"]),
        "sk_values": np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]]),  # row 0 is a tie
    }
    assert _label_mismatches(out, 1e-5) == (1, 1)


def test_feed_builds_typed_tensors_and_blanks_missing_strings() -> None:
    frame = pd.DataFrame({"x": [1.5, 2.0], "n": [3, 4], "s": ["a", None]})
    schema_inputs = [OnnxInput("X", "float32", ["x", "n"]), OnnxInput("s", "string", ["s"])]
    feed = onnx_feed(schema_inputs, frame)
    assert feed["X"].dtype == np.float32 and feed["X"].shape == (2, 2)
    assert feed["s"].dtype == object and feed["s"].tolist() == [["a"], [""]]
    with pytest.raises(ValueError, match="missing column"):
        onnx_feed([OnnxInput("X", "float64", ["nope"])], frame)


class HandRolledClassifier(ClassifierMixin, BaseEstimator):
    """A classifier skl2onnx has never heard of."""

    def fit(self, X: pd.DataFrame, y: pd.Series) -> "HandRolledClassifier":
        self.classes_ = np.unique(y)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.repeat(self.classes_[:1], len(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def test_unknown_estimator_raises_one_sentence_error() -> None:
    X, y = _toy("iris")
    with pytest.raises(ConversionError) as info:
        convert_and_check(HandRolledClassifier().fit(X, y), _features(X), C, X)
    message = str(info.value)
    assert message.startswith("cannot convert HandRolledClassifier: skl2onnx has no converter")
    assert "Traceback" not in message and "\n" not in message


def test_outlier_detector_in_classifier_slot_is_refused() -> None:
    X, _ = _toy("iris")
    with pytest.raises(ConversionError, match="IsolationForest: .*not a classifier"):
        convert_estimator(IsolationForest(n_estimators=5).fit(X), onnx_layout(None, _features(X), "float32"), C)


def test_parity_reports_failure_with_counts() -> None:
    X, y = _toy("iris")
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    result = convert_and_check(model, _features(X), C, X)
    strict = check_parity(model, result.onnx_bytes, result.schema, X, atol=0.0)
    assert not strict.passed and strict.failing_rows > 0
    assert strict.reason.startswith("parity failed for RandomForestClassifier: probabilities differ by")
    assert f"on {strict.failing_rows} of {len(X)} rows" in strict.reason


def test_regression_failure_reports_the_preferred_attempt() -> None:
    # At zero tolerance both float types fail; the answer is the preferred (float32) one.
    X, y = _toy("diabetes")
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    result = convert_and_check(model, _features(X), R, X, atol=0.0, rtol=0.0)
    assert not result.parity.passed and result.schema.onnx_inputs[0].type == "float32"
    assert result.parity.reason.startswith("parity failed for GradientBoostingRegressor: predictions differ by")


# ---------------------------------------------------------------- MLflow round trip


def _register(settings, name: str, model, X: pd.DataFrame, y: pd.Series, task: str) -> str:
    """Log + register a model exactly the way `vigil train` does; return the version."""
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    client = connect(settings)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    model.fit(X_train, y_train)
    # MLflow 3 saves sklearn models with skops, which refuses tree internals unless the
    # logger vouches for them; we built this model ourselves, so it does. Explicit pip
    # requirements skip MLflow's slow requirement-inference subprocess.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    with mlflow.start_run(experiment_id=ensure_experiment(client, settings)) as run:
        info = mlflow.sklearn.log_model(model, name=A.ARTIFACT_MODEL, input_example=X_train.head(5),
                                        skops_trusted_types=trusted, pip_requirements=["scikit-learn"],
                                        signature=infer_signature(X_train, model.predict(X_train)))
        holdout = X_test.assign(label=y_test.to_numpy())
        path = Path(settings.home) / Path(A.ARTIFACT_HOLDOUT).name
        holdout.to_parquet(path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(A.ARTIFACT_HOLDOUT).parent))
    version = mlflow.register_model(info.model_uri, name)  # MLflow 3: models:/m-<id>
    for key, value in {A.TAG_TASK: task, A.TAG_TARGET: "label", A.TAG_RUN_ID: run.info.run_id}.items():
        client.set_model_version_tag(name, version.version, key, value)
    return str(version.version)


def _tags(settings, name: str, version: str) -> dict[str, str]:
    return connect(settings).get_model_version(name, version).tags


@pytest.mark.filterwarnings("ignore")
def test_convert_version_logs_artifacts_and_tags(tmp_path: Path) -> None:
    import mlflow.artifacts

    settings = load({"VIGIL_HOME": str(tmp_path)})
    X, y = _mixed(False, rows=120)
    version = _register(settings, "mixed", _mixed_pipeline(LogisticRegression(max_iter=500)), X, y, C)

    report = convert_version(settings, ModelRef("mixed", version), progress=False)

    tags = _tags(settings, "mixed", version)
    assert tags[A.TAG_SERVABLE] == "true" and tags[A.TAG_PARITY] == "passed"
    assert 9 <= int(tags[A.TAG_OPSET]) <= 17 and float(tags[A.TAG_PARITY_MAX_ABS_ERR]) <= 1e-5
    assert tags[A.TAG_ONNX_URI] == report.onnx_uri
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=tags[A.TAG_ONNX_URI], dst_path=str(tmp_path / "dl")))
    assert sorted(p.name for p in local.iterdir()) == sorted([A.ONNX_FILE, A.SCHEMA_FILE, A.PARITY_FILE])
    schema = ServingSchema.load(local / A.SCHEMA_FILE)
    assert (schema.model_name, schema.model_version, schema.target) == ("mixed", version, "label")
    assert schema.onnx_inputs[0].name == "height__cm_" and schema.onnx_inputs[0].columns == ["height (cm)"]
    assert schema.classes == ["high", "low"] and [f.type for f in schema.features] == ["number", "integer", "string", "string"]
    parity = json.loads((local / A.PARITY_FILE).read_text())
    assert parity["passed"] is True and parity["rows"] == 36 and parity["estimator_class"] == "LogisticRegression"
    assert parity["steps"] == ["ColumnTransformer", "LogisticRegression"]
    assert set(parity["versions"]) == {"scikit-learn", "skl2onnx", "onnxruntime", "onnx"}
    assert parity["opset"] == schema.opset == int(tags[A.TAG_OPSET]) and parity["target_opset"] == 17
    # The served graph answers a request built from the schema alone.
    session = ort.InferenceSession(str(local / A.ONNX_FILE), providers=["CPUExecutionProvider"])
    labels = session.run([schema.label_output], dict(onnx_feed(schema, X.head(3))))[0]
    assert set(labels.tolist()) <= {"high", "low"}
    # permutation importance on the holdout rows, for the monitor's weighting
    run_id = tags[A.TAG_RUN_ID]
    imp = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=A.ARTIFACT_IMPORTANCE,
                                                              dst_path=str(tmp_path / "imp"))).read_text())
    assert set(imp["importance"]) == set(X.columns) and imp["rows"] == 36 and imp["scoring"] == "accuracy"


def test_permutation_importance_ranks_the_feature_the_model_uses_first() -> None:
    from sklearn.ensemble import RandomForestRegressor

    from converter.importance import permutation_importance_of

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"signal": rng.normal(size=600), "weak": rng.normal(size=600), "noise": rng.normal(size=600)})
    y = 3 * X.signal + 0.5 * X.weak + rng.normal(0, 0.1, 600)
    model = RandomForestRegressor(n_estimators=30, random_state=0).fit(X[:400], y[:400])
    imp = permutation_importance_of(model, X[400:], y[400:], "regression")["importance"]
    assert imp["signal"] > imp["weak"] > imp["noise"] and abs(imp["noise"]) < 0.05


@pytest.mark.filterwarnings("ignore")
def test_failed_parity_and_unconvertible_versions_are_tagged_unservable(tmp_path: Path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    X, y = _toy("iris")
    version = _register(settings, "iris", RandomForestClassifier(n_estimators=5, random_state=0), X, y, C)
    convert_version(settings, ModelRef.parse(f"models:/iris/{version}"), progress=False)
    assert A.TAG_ONNX_URI in _tags(settings, "iris", version)

    # Float32 trees average probabilities with ~1e-7 error: a zero tolerance must fail.
    with pytest.raises(ConversionError, match=r"^parity failed for RandomForestClassifier: probabilities differ"):
        convert_version(settings, ModelRef("iris", version), progress=False, atol=0.0, rtol=0.0)
    tags = _tags(settings, "iris", version)
    assert tags[A.TAG_SERVABLE] == "false" and tags[A.TAG_PARITY] == "failed"
    assert tags[A.TAG_SERVABLE_REASON].startswith("parity failed for RandomForestClassifier")
    assert A.TAG_ONNX_URI not in tags  # a stale URI must not keep the version deployable

    # A regressor registered as classification: refused, tagged, no traceback text.
    wrong = _register(settings, "iris", Ridge(), X, y, C)
    with pytest.raises(ConversionError, match="Ridge: the version is tagged as classification"):
        convert_version(settings, ModelRef("iris", wrong), progress=False)
    tags = _tags(settings, "iris", wrong)
    assert tags[A.TAG_SERVABLE] == "false" and "not a classifier" in tags[A.TAG_SERVABLE_REASON]

    with pytest.raises(RegistryError, match="cannot resolve models:/iris/99"):
        convert_version(settings, "models:/iris/99", progress=False)
