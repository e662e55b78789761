"""The serving schema: what the ONNX model expects and returns, as plain JSON.

The converter writes it next to `model.onnx`; the service reads it. Serving needs only
these two files — nothing is ever unpickled on the serving path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1

FeatureType = Literal["number", "integer", "string"]
OnnxType = Literal["float32", "float64", "int64", "string"]


@dataclass(frozen=True)
class Feature:
    """One input column as the client sends it."""

    name: str
    type: FeatureType


@dataclass(frozen=True)
class OnnxInput:
    """One ONNX graph input: a [rows, len(columns)] tensor built from these features."""

    name: str
    type: OnnxType
    columns: list[str]


@dataclass(frozen=True)
class ServingSchema:
    """Everything the service needs to validate a request and read the model's outputs."""

    model_name: str
    model_version: str
    task: Literal["classification", "regression"]
    features: list[Feature]
    onnx_inputs: list[OnnxInput]
    label_output: str  # classifiers: predicted labels; regressors: predicted values
    probability_output: str | None = None  # classifiers: [rows, classes] probabilities
    classes: list[Any] = field(default_factory=list)
    target: str = "target"
    opset: int = 0
    schema_version: int = SCHEMA_VERSION

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ServingSchema":
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported serving schema version {version!r} (expected {SCHEMA_VERSION})")
        try:
            return cls(
                model_name=str(data["model_name"]),
                model_version=str(data["model_version"]),
                task=data["task"],
                features=[Feature(**f) for f in data["features"]],
                onnx_inputs=[OnnxInput(**i) for i in data["onnx_inputs"]],
                label_output=data["label_output"],
                probability_output=data.get("probability_output"),
                classes=list(data.get("classes") or []),
                target=data.get("target", "target"),
                opset=int(data.get("opset", 0)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed serving schema: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> "ServingSchema":
        return cls.from_dict(json.loads(Path(path).read_text()))
