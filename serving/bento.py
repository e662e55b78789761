"""`vigil export`: pack a registered model's ONNX folder into a bento and write an archive.

The ONNX folder becomes a BentoML model (`bentoml.models.create`, the framework-free
API) named `vigil-<name>`, labelled with its registry name and version. The bento is
built from the project's bentofile.yaml with the bento argument `vigil_model=<tag>`, so
service.py declares that model (`bentoml.models.BentoModel`) and serves it from the
bento itself — MLflow is never contacted at run time.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from vigil import artifacts
from vigil.config import Settings, apply_to_process
from vigil.registry import ModelRef
from vigil.schema import ServingSchema
from vigil.paths import PROJECT_ROOT
from serving.source import download

BENTOFILE = PROJECT_ROOT / "bentofile.yaml"
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
PACKED_FILES = (artifacts.ONNX_FILE, artifacts.SCHEMA_FILE, artifacts.PARITY_FILE)


class ExportError(RuntimeError):
    """The bento cannot be built or written."""


def bento_name(model_name: str) -> str:
    """BentoML names are lowercase alphanumerics with '-', '_' or '.'."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", model_name.lower()).strip("-_.") or "model"
    return f"vigil-{slug}"


def _check_bentoml_home(settings: Settings) -> None:
    """BentoML reads BENTOML_HOME once, at import: it must already be Vigil's."""
    apply_to_process(settings)
    if "bentoml" in sys.modules:
        from bentoml._internal.configuration.containers import BentoMLContainer

        current = Path(BentoMLContainer.bentoml_home.get()).resolve()
        wanted = Path(os.environ["BENTOML_HOME"]).resolve()
        if current != wanted:
            raise ExportError(f"BentoML was already initialised with home {current}, not {wanted}")


def pack_model(folder: Path, name: str, version: str, schema: ServingSchema) -> str:
    """Copy the ONNX folder into a new BentoML model; returns its tag."""
    import bentoml

    labels = {"registry_name": name, "registry_version": version, "vigil": "onnx"}
    with bentoml.models.create(
        bento_name(name), labels=labels, metadata={"task": schema.task, "opset": schema.opset}
    ) as model:
        for name in PACKED_FILES:
            if (folder / name).is_file():
                shutil.copy2(folder / name, Path(model.path) / name)
    return str(model.tag)


def export_bento(settings: Settings, ref: ModelRef, out_dir: Path) -> Path:
    """Resolve `ref`, pack its ONNX model into a bento, export it to `out_dir`; returns the archive."""
    _check_bentoml_home(settings)
    located = download(settings, ref)
    folder, version = located.path, located.version or "unknown"
    schema = ServingSchema.load(folder / artifacts.SCHEMA_FILE)
    import bentoml

    model_tag = pack_model(folder, ref.name, version, schema)
    # BentoML locks the bento's requirements with `uv pip compile`, which would otherwise pick
    # the newest release of every dependency: constrain it to the versions the tests ran with.
    previous = os.environ.get("UV_CONSTRAINT")
    if CONSTRAINTS.is_file():
        os.environ["UV_CONSTRAINT"] = str(CONSTRAINTS)
    try:
        bento = bentoml.bentos.build_bentofile(
            str(BENTOFILE),
            build_ctx=str(PROJECT_ROOT),
            name=bento_name(ref.name),
            labels={"registry_name": ref.name, "registry_version": version},
            args={"vigil_model": model_tag},
        )
    except bentoml.exceptions.BentoMLException as exc:
        raise ExportError(f"building the bento failed: {exc}") from None
    finally:
        if previous is None:
            os.environ.pop("UV_CONSTRAINT", None)
        else:
            os.environ["UV_CONSTRAINT"] = previous
    # Absolute: BentoML's fsspec export reads a relative "bentos/x.bento" as "/bentos/x.bento".
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{ref.name}-{version}.bento"
    target.unlink(missing_ok=True)
    bentoml.bentos.export_bento(bento.tag, str(target))
    return target
