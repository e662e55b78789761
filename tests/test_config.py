"""The typed settings module: defaults, parsing, errors, derived values."""

from pathlib import Path

import pytest

from vigil import config


def test_defaults_live_under_home(tmp_path: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(tmp_path)})
    assert settings.home == tmp_path.resolve()
    assert settings.mlflow_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert settings.bentoml_home == tmp_path.resolve() / "bentoml"
    assert settings.model == "" and settings.model_uri == "models:/iris@champion"
    assert settings.port == 3000 and settings.grpc_port == 8001 and settings.monitor_port == 3100


def test_explicit_tracking_uri_wins(tmp_path: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(tmp_path), "VIGIL_TRACKING_URI": "http://mlflow:5000"})
    assert settings.mlflow_uri == "http://mlflow:5000"


def test_batch_latency_is_derived_from_the_slo() -> None:
    assert config.load({"VIGIL_SLO_P99_MS": "20"}).batch_latency_ms == 2.0
    assert config.load({"VIGIL_SLO_P99_MS": "200"}).batch_latency_ms == 5.0  # capped
    assert config.load({"VIGIL_MAX_LATENCY_MS": "7"}).batch_latency_ms == 7.0  # explicit wins


@pytest.mark.parametrize(
    "name,value,fragment",
    [("VIGIL_PORT", "abc", "must be an integer"), ("VIGIL_MAX_BATCH_SIZE", "0", ">= 1"), ("VIGIL_SLO_P99_MS", "x", "number")],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        config.load({name: value})
    assert fragment in str(info.value)


def test_process_env_turns_telemetry_off_and_keeps_user_choices(tmp_path: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(tmp_path)})
    env = config.process_env(settings, base={"DO_NOT_TRACK": "0"})
    assert env["WHYLOGS_NO_ANALYTICS"] == "True"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["BENTOML_DO_NOT_TRACK"] == "True"
    assert env["DO_NOT_TRACK"] == "0"  # the user's own setting is kept
    assert env["BENTOML_HOME"] == str(tmp_path.resolve() / "bentoml")
    assert env["VIGIL_HOME"] == str(tmp_path.resolve())


def _other_value(field, kind) -> str | None:
    """A valid value different from the field's default, as its VIGIL_* string (None: needs a real file)."""
    meta, default = field.metadata, field.default
    if meta["kind"] in ("pem", "file"):
        return None
    if kind is bool:
        return "0" if default else "1"
    if kind in (int, float):
        return str(default + 2)
    if meta["choices"]:
        return next(c for c in meta["choices"] if c != default)
    if kind is Path:
        return "/tmp/vigil-elsewhere"
    return f"other-{field.name}"


def test_every_declared_setting_is_read_from_its_variable_and_written_back() -> None:
    """No setting can keep its default silently: each one follows its VIGIL_* variable, and to_env inverts load."""
    import dataclasses
    from typing import get_type_hints

    types = get_type_hints(config.Settings)
    env = {}
    for field in dataclasses.fields(config.Settings):
        value = _other_value(field, types[field.name])
        if value is not None:
            env[config.env_name(field.name)] = value
    settings = config.load(env)
    for field in dataclasses.fields(config.Settings):
        name = config.env_name(field.name)
        if name in env:
            assert getattr(settings, field.name) != field.default, f"{name} did not change {field.name}"
    assert config.load(config.to_env(settings)) == settings
    assert len(env) > 50
