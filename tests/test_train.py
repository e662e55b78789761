"""`vigil train` against a real SQLite-backed MLflow registry in a temporary VIGIL_HOME."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lifecycle import datasets, estimators
from lifecycle.errors import TrainError
from lifecycle.training import TrainResult, train
from vigil import artifacts as A
from vigil.config import Settings, load
from vigil.registry import connect

IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # One registry for the module: creating the SQLite schema costs ~1.5 s per home.
    return load({"VIGIL_HOME": str(tmp_path_factory.mktemp("vigil-home"))})


@pytest.fixture(scope="module")
def iris_v1_v2(settings: Settings) -> tuple[TrainResult, TrainResult]:
    first = train(settings)
    second = train(settings, estimator="random-forest", reference_rows=50)
    return first, second


def _download(settings: Settings, run_id: str, artifact: str, dst: Path) -> pd.DataFrame:
    client = connect(settings)
    return pd.read_parquet(client.download_artifacts(run_id, artifact, str(dst)))


def _input_types(settings: Settings, name: str, version: str) -> dict[str, str]:
    from mlflow.models import get_model_info

    connect(settings)
    signature = get_model_info(f"models:/{name}/{version}").signature
    return {col.name: col.type.name for col in signature.inputs.inputs}


def test_iris_registers_v1_then_v2(iris_v1_v2: tuple[TrainResult, TrainResult]) -> None:
    first, second = iris_v1_v2
    assert (first.name, first.version, second.version) == ("iris", "1", "2")
    assert (first.estimator, second.estimator) == ("logreg", "random-forest")
    assert first.task == A.TASK_CLASSIFICATION
    assert first.metrics["accuracy"] > 0.9
    assert set(first.metrics) == {"accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc"}
    assert first.summary.startswith("iris v1: LogisticRegression, accuracy=")
    assert first.summary.endswith("on 30 holdout rows")
    assert first.run_id != second.run_id


def test_iris_version_tags_and_description(settings: Settings, iris_v1_v2: tuple[TrainResult, TrainResult]) -> None:
    first, _ = iris_v1_v2
    version = connect(settings).get_model_version("iris", "1")
    assert version.status == "READY"
    tags = version.tags
    assert tags[A.TAG_TASK] == "classification"
    assert tags[A.TAG_TARGET] == "target"
    assert tags[A.TAG_DATASET] == "iris"
    assert tags[A.TAG_ESTIMATOR] == "logreg"
    assert tags[A.TAG_RUN_ID] == first.run_id
    assert tags[A.TAG_PRIMARY_METRIC] == "accuracy"
    assert float(tags[A.TAG_METRIC_PREFIX + "accuracy"]) == pytest.approx(first.metrics["accuracy"])
    assert float(tags[A.TAG_METRIC_PREFIX + "roc_auc"]) == pytest.approx(first.metrics["roc_auc"])
    assert version.description == first.summary
    run = connect(settings).get_run(first.run_id)
    assert run.data.params["dataset"] == "iris" and run.data.params["seed"] == "0"
    assert run.data.params["model.max_iter"] == "1000"
    assert run.data.metrics["f1_macro"] == pytest.approx(first.metrics["f1_macro"])


def test_iris_artifacts(settings: Settings, iris_v1_v2: tuple[TrainResult, TrainResult], tmp_path: Path) -> None:
    first, second = iris_v1_v2
    reference = _download(settings, first.run_id, A.ARTIFACT_REFERENCE, tmp_path / "a")
    proba = ["proba_0", "proba_1", "proba_2"]
    assert list(reference.columns) == [*IRIS_FEATURES, "target", A.REFERENCE_PREDICTION_COLUMN, *proba]
    assert len(reference) == 120  # all training rows: fewer than reference_rows
    assert np.allclose(reference[proba].sum(axis=1), 1.0)
    assert (reference["prediction"] == reference["target"]).mean() > 0.9
    holdout = _download(settings, first.run_id, A.ARTIFACT_HOLDOUT, tmp_path / "b")
    assert list(holdout.columns) == [*IRIS_FEATURES, "target"]
    assert len(holdout) == 30
    assert len(_download(settings, second.run_id, A.ARTIFACT_REFERENCE, tmp_path / "c")) == 50


def test_iris_model_loads_with_its_signature(
    settings: Settings, iris_v1_v2: tuple[TrainResult, TrainResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.sklearn

    assert _input_types(settings, "iris", "1") == dict.fromkeys(IRIS_FEATURES, "double")
    # MLflow 3.17 refuses to unpickle any sklearn model without this opt-in.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    model = mlflow.sklearn.load_model("models:/iris/1")
    X, _, _ = datasets.load_dataset("iris")
    assert list(model.predict(X.head(3))) == [0, 0, 0]


@pytest.mark.parametrize(
    ("dataset", "task", "estimator", "primary"),
    [
        ("breast_cancer", "classification", "logreg", "accuracy"),
        ("wine", "classification", "logreg", "accuracy"),
        ("diabetes", "regression", "ridge", "r2"),
    ],
)
def test_other_bundled_datasets(settings: Settings, dataset: str, task: str, estimator: str, primary: str) -> None:
    result = train(settings, dataset=dataset)
    assert (result.name, result.version, result.task, result.estimator) == (dataset, "1", task, estimator)
    tags = connect(settings).get_model_version(dataset, "1").tags
    assert tags[A.TAG_PRIMARY_METRIC] == primary
    if task == "regression":
        assert set(result.metrics) == {"r2", "mae", "rmse"}
        assert 0.3 < result.metrics["r2"] < 1.0
        assert "proba_" not in "".join(_download_columns(settings, result.run_id))
    else:
        assert result.metrics["accuracy"] > 0.9


def _download_columns(settings: Settings, run_id: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return list(_download(settings, run_id, A.ARTIFACT_REFERENCE, Path(tmp)).columns)


def test_mixed_csv_trains_pipeline_with_string_signature(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "Customer Churn.csv"
    datasets.make_mixed_demo_frame(400, seed=1).to_csv(path, index=False)
    result = train(settings, csv=path, target="target")
    assert (result.name, result.estimator, result.task) == ("customer-churn", "pipeline", "classification")
    assert result.metrics["accuracy"] > 0.75
    assert _input_types(settings, "customer-churn", result.version) == {
        "age": "double",
        "income": "double",
        "plan": "string",
        "region": "string",
    }
    tags = connect(settings).get_model_version("customer-churn", result.version).tags
    assert tags[A.TAG_DATASET] == "csv:Customer Churn.csv"
    reference = _download(settings, result.run_id, A.ARTIFACT_REFERENCE, tmp_path / "r")
    assert {"proba_no", "proba_yes", "prediction"} <= set(reference.columns)
    assert set(reference["plan"]) == {"basic", "plus", "pro"}
    assert len(reference) == 320


def test_non_pipeline_estimator_on_text_columns_gets_the_column_transformer() -> None:
    frame = datasets.make_mixed_demo_frame(200, seed=2)
    X, y, task = datasets.split_target(frame, "target")
    model = estimators.build_model("random-forest", task, X, seed=0).fit(X, y)
    assert [name for name, _ in model.steps] == ["preprocess", "model"]
    unseen = X.head(2).assign(plan="enterprise")  # unknown category must not raise
    assert set(model.predict(unseen)) <= {"yes", "no"}


def test_same_seed_same_model() -> None:
    X, y, task = datasets.load_dataset("wine")
    fit = lambda: estimators.build_model("mlp", task, X, seed=3).fit(X, y).predict_proba(X)  # noqa: E731
    assert np.array_equal(fit(), fit())


def test_task_inference() -> None:
    assert datasets.infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert datasets.infer_task(pd.Series([1.0, 2.0, 1.0])) == "classification"
    assert datasets.infer_task(pd.Series(["a", "b"])) == "classification"
    assert datasets.infer_task(pd.Series([0.5, 1.5, 2.0])) == "regression"
    assert datasets.infer_task(pd.Series(range(50))) == "regression"
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1, 2, 3, 4]})
    assert datasets.split_target(frame, "y", task="regression")[2] == "regression"


def test_text_features_are_python_str_and_round_trip_parquet(tmp_path: Path) -> None:
    frame = datasets.make_mixed_demo_frame(20, seed=0)
    frame.to_csv(tmp_path / "d.csv", index=False)
    X, y, _ = datasets.load_csv(tmp_path / "d.csv", "target")  # pandas 3 reads text as its str dtype
    assert X["plan"].dtype == object and all(type(v) is str for v in X["plan"])
    assert X["age"].dtype == np.float64
    X.to_parquet(tmp_path / "x.parquet")
    assert pd.read_parquet(tmp_path / "x.parquet")["plan"].tolist() == X["plan"].tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"csv": Path("/nonexistent/data.csv"), "target": "y"}, "CSV file not found"),
        ({"csv": "CSV", "target": "nope"}, "target column 'nope' is not in"),
        ({"csv": "CSV"}, "needs --target"),
        ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
        ({"estimator": "xgboost"}, "unknown estimator 'xgboost'; choose one of auto, logreg"),
        ({"dataset": "diabetes", "estimator": "svc"}, "estimator 'svc' does not do regression"),
        ({"csv": "SINGLE", "target": "label"}, "single class"),
        ({"csv": "CSV", "target": "plan", "task": "regression"}, "cannot be a regression target"),
        ({"csv": "TINY", "target": "label", "estimator": "knn", "test_size": 0.6}, "'knn' cannot fit this data"),
        ({"csv": "FEW", "target": "label"}, "needs at least 10 rows, the data has 6"),
        ({"test_size": 1.5}, "test size must be a fraction"),
        ({"name": "bad/name"}, "invalid model name"),
    ],
)
def test_user_errors_are_train_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    csv = tmp_path / "mixed.csv"
    datasets.make_mixed_demo_frame(30, seed=0).to_csv(csv, index=False)
    single = tmp_path / "single.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "a", "a"]}).to_csv(single, index=False)
    tiny = tmp_path / "tiny.csv"
    pd.DataFrame({"x": np.arange(12.0), "label": ["a", "b"] * 6}).to_csv(tiny, index=False)
    few = tmp_path / "few.csv"
    pd.DataFrame({"x": np.arange(6.0), "label": ["a", "b"] * 3}).to_csv(few, index=False)
    files = {"CSV": csv, "SINGLE": single, "TINY": tiny, "FEW": few}
    kwargs = {k: files.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    settings = load({"VIGIL_HOME": str(tmp_path / "home")})
    with pytest.raises(TrainError, match=message.replace("(", r"\(")):
        train(settings, **kwargs)
    assert not (tmp_path / "home" / "mlflow.db").exists()  # refused before touching the registry


def test_missing_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    pd.DataFrame({"a": [1.0, None, 3.0], "b": ["x", "y", None], "t": [0, 1, 0]}).to_csv(path, index=False)
    with pytest.raises(TrainError, match=r"missing values in 'a' \(1\), 'b' \(1\)"):
        datasets.load_csv(path, "t")


def test_estimator_params_override_and_bad_names_are_refused(tmp_path: Path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    result = train(settings, dataset="iris", estimator="random-forest", params={"n_estimators": "7", "max_depth": "none"})
    client = connect(settings)
    run = client.get_run(result.run_id)
    assert run.data.params["model.n_estimators"] == "7"
    assert run.data.params["model.max_depth"] == "None"
    with pytest.raises(TrainError, match="no such parameter"):
        train(settings, dataset="iris", estimator="random-forest", params={"trees": "7"})
