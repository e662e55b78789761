"""scikit-learn estimator -> ONNX graph plus the serving schema that describes it.

Pure functions, no MLflow: given a fitted estimator, its input features and the task,
decide the ONNX input layout, run skl2onnx at a pinned opset and describe the result as
a `ServingSchema`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import onnx

from vigil.artifacts import TASK_CLASSIFICATION, TASK_REGRESSION
from vigil.schema import Feature, OnnxInput, ServingSchema

# Pinned ceiling so a converted model does not change when a library is upgraded: every
# supported estimator converts and passes parity within 17 / ai.onnx.ml 3, ONNX Runtime
# 1.32 runs both, and so would much older ORT builds. skl2onnx stamps each graph with the
# lowest opset its operators need, so a graph's real opset (`graph_opsets`) may be lower.
TARGET_OPSET = 17
TARGET_ML_OPSET = 3
SINGLE_INPUT = "X"

FloatType = Literal["float32", "float64"]

# sklearn trees compare features as float32, so float32 input reproduces their splits
# exactly (and is cheaper); everything else computes in float64 and needs double input
# to meet 1e-5. The other type is the fallback if the first fails parity.
_TREE_MODULES = ("sklearn.tree", "sklearn.ensemble._forest", "sklearn.ensemble._gb",
                 "sklearn.ensemble._hist_gradient_boosting")


class ConversionError(Exception):
    """A model version that cannot be served; the message is one sentence for the user."""


def estimator_name(estimator: Any) -> str:
    """The model's class name for messages: "SVC", or "LogisticRegression pipeline"."""
    name = type(final_step(estimator)).__name__
    return f"{name} pipeline" if getattr(estimator, "steps", None) else name


def final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _has_column_transformer(estimator: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    steps = [s for _, s in getattr(estimator, "steps", [])] or [estimator]
    return any(isinstance(step, ColumnTransformer) for step in steps)


def _is_tree(estimator: Any) -> bool:
    return type(final_step(estimator)).__module__.startswith(_TREE_MODULES)


def float_candidates(estimator: Any) -> list[FloatType]:
    """Float input types to try, best first, for this estimator.

    A bare tree model is exact on float32. Behind preprocessing (a scaler), float32 input
    would make ONNX scale in float32 while sklearn scales in float64 and only then casts,
    and one ulp flips a split: those pipelines go float64 first (see `_onnx_ready`).
    """
    if _is_tree(estimator):
        preprocessed = len(getattr(estimator, "steps", [])) > 1
        return ["float64", "float32"] if preprocessed else ["float32", "float64"]
    return ["float64", "float32"]


def _onnx_ready(estimator: Any, inputs: list[OnnxInput]) -> Any:
    """The estimator as skl2onnx should see it: a tree fed doubles gets a float32 cast.

    sklearn trees cast their input to float32; skl2onnx's double-input trees do not
    reproduce that exactly. An explicit CastTransformer (identity for sklearn, a Cast
    node in ONNX) in front of the tree makes the graph do what sklearn does.
    """
    if not _is_tree(estimator) or all(i.type != "float64" for i in inputs):
        return estimator
    from skl2onnx.sklapi import CastTransformer
    from sklearn.pipeline import Pipeline

    steps = list(getattr(estimator, "steps", [])) or [("model", estimator)]
    return Pipeline(steps[:-1] + [("vigil_float32", CastTransformer(dtype=np.float32)), steps[-1]])


def onnx_layout(estimator: Any, features: list[Feature], float_type: FloatType) -> list[OnnxInput]:
    """ONNX inputs for `features`: one "X" tensor if all numeric, else one per column.

    A single [rows, n] tensor is the fastest to build and run. String columns cannot
    share a tensor with numbers, and a ColumnTransformer picks its columns by name, so
    those models get one [rows, 1] input per column, named after the column (skl2onnx
    may sanitise that name in the graph, see `bind_input_names`).
    """
    if not features:
        raise ConversionError("cannot convert a model whose signature has no input columns")
    numeric = all(f.type != "string" for f in features)
    if numeric and not _has_column_transformer(estimator):
        return [OnnxInput(SINGLE_INPUT, float_type, [f.name for f in features])]
    types = {"string": "string", "integer": "int64", "number": float_type}
    return [OnnxInput(f.name, types[f.type], [f.name]) for f in features]


def _initial_types(inputs: list[OnnxInput]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    kinds = {"float32": FloatTensorType, "float64": DoubleTensorType,
             "int64": Int64TensorType, "string": StringTensorType}
    return [(i.name, kinds[i.type]([None, len(i.columns)])) for i in inputs]


def check_task(estimator: Any, task: str) -> None:
    """Refuse estimators whose kind does not match the task the version was tagged with."""
    from sklearn.base import is_classifier, is_regressor

    name = estimator_name(estimator)
    if task == TASK_CLASSIFICATION:
        if not is_classifier(estimator):
            raise ConversionError(f"cannot convert {name}: the version is tagged as classification but it is not a classifier")
        if not hasattr(estimator, "predict_proba"):
            raise ConversionError(f"cannot convert {name}: it has no predict_proba (wrap SVC in CalibratedClassifierCV or use probability=True)")
    elif task == TASK_REGRESSION:
        if not is_regressor(estimator):
            raise ConversionError(f"cannot convert {name}: the version is tagged as regression but it is not a regressor")
    else:
        raise ConversionError(f"cannot convert {name}: unknown task {task!r} (expected classification or regression)")


def convert_estimator(estimator: Any, inputs: list[OnnxInput], task: str) -> onnx.ModelProto:
    """Convert a fitted estimator to ONNX with the given input layout."""
    from skl2onnx import convert_sklearn

    check_task(estimator, task)
    # zipmap=False: probabilities as a plain [rows, classes] tensor, not a list of maps.
    options = {"zipmap": False} if task == TASK_CLASSIFICATION else None
    try:
        model = convert_sklearn(
            _onnx_ready(estimator, inputs),
            initial_types=_initial_types(inputs),
            target_opset={"": TARGET_OPSET, "ai.onnx.ml": TARGET_ML_OPSET},
            options={type(final_step(estimator)): options} if options else None,
        )
    except Exception as exc:  # skl2onnx raises many types; the user needs one sentence
        raise ConversionError(f"cannot convert {estimator_name(estimator)}: skl2onnx {_why(exc)}") from exc
    return model


def _why(exc: Exception) -> str:
    """skl2onnx's error as one short clause, naming the component it could not handle."""
    text = " ".join(str(exc).split())
    missing = re.search(r"shape calculator for (?:alias|type) '(?:<class )?'?([\w.]+)", text)
    if missing:
        return f"has no converter for {missing[1].rsplit('.', 1)[-1]}"
    first = re.split(r"(?<=\.) ", text, maxsplit=1)[0]  # skl2onnx adds "You may raise an issue..."
    return f"failed: {first[:200]}"


def bind_input_names(model: onnx.ModelProto, inputs: list[OnnxInput]) -> list[OnnxInput]:
    """The layout with each input renamed to what skl2onnx called it in the graph.

    skl2onnx turns column names into C-style identifiers ("petal length (cm)" becomes
    "petal_length__cm_", with a suffix on clashes) but keeps the declared order, so
    inputs are matched by position; `columns` keeps the names clients send.
    """
    names = [i.name for i in model.graph.input]
    if len(names) != len(inputs):
        declared = ", ".join(i.name for i in inputs)
        raise ConversionError(f"converted graph has inputs {names}, expected one per declared input ({declared})")
    return [OnnxInput(name, spec.type, spec.columns) for name, spec in zip(names, inputs)]


def graph_opsets(model: onnx.ModelProto) -> dict[str, int]:
    """Opset per domain the graph declares ("" is the default ONNX domain)."""
    return {o.domain or "": o.version for o in model.opset_import}


def output_names(model: onnx.ModelProto, task: str) -> tuple[str, str | None]:
    """(label/value output, probability output or None) of a converted graph."""
    names = [o.name for o in model.graph.output]
    if task == TASK_REGRESSION:
        return names[0], None
    if len(names) < 2:
        raise ConversionError(f"converted classifier has outputs {names}, expected label and probabilities")
    return names[0], names[1]


def json_classes(estimator: Any) -> list[Any]:
    """`classes_` as JSON-native values: ints stay ints, strings stay strings."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return []
    return [c.item() if isinstance(c, np.generic) else c for c in np.asarray(classes).tolist()]


def build_schema(
    estimator: Any,
    model: onnx.ModelProto,
    features: list[Feature],
    inputs: list[OnnxInput],
    task: str,
    target: str = "target",
    model_name: str = "",
    model_version: str = "",
) -> ServingSchema:
    """The serving schema for a converted model."""
    label, proba = output_names(model, task)
    inputs = bind_input_names(model, inputs)
    return ServingSchema(
        model_name=model_name,
        model_version=str(model_version),
        task=task,  # type: ignore[arg-type]
        features=list(features),
        onnx_inputs=inputs,
        label_output=label,
        probability_output=proba,
        classes=json_classes(estimator) if task == TASK_CLASSIFICATION else [],
        target=target,
        opset=graph_opsets(model).get("", TARGET_OPSET),
    )
