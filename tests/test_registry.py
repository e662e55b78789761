"""Model URIs and the embedded SQLite registry."""

from pathlib import Path

import pytest

from vigil import config
from vigil.registry import ModelRef, RegistryError, connect, ensure_experiment, resolve_version


@pytest.mark.parametrize(
    "uri,expected",
    [("models:/iris/3", ModelRef("iris", version="3")), ("models:/iris@champion", ModelRef("iris", alias="champion"))],
)
def test_model_uris_parse_and_print_back(uri: str, expected: ModelRef) -> None:
    assert ModelRef.parse(uri) == expected
    assert str(ModelRef.parse(uri)) == uri


@pytest.mark.parametrize("uri", ["iris", "models:/", "models:/iris", "runs:/abc/model", "models:/iris/x"])
def test_bad_model_uris_are_refused(uri: str) -> None:
    with pytest.raises(RegistryError, match="not a model URI"):
        ModelRef.parse(uri)


def test_embedded_registry_keeps_artifacts_under_home(tmp_path: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(tmp_path)})
    client = connect(settings)
    experiment_id = ensure_experiment(client, settings)
    assert ensure_experiment(client, settings) == experiment_id  # idempotent
    location = client.get_experiment(experiment_id).artifact_location
    assert location.startswith((tmp_path.resolve() / "artifacts").as_uri())
    assert (tmp_path / "mlflow.db").exists()
    with pytest.raises(RegistryError, match="cannot resolve models:/nope@champion"):
        resolve_version(client, "models:/nope@champion")
