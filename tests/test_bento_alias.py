"""A bento follows VIGIL_MODEL when it is set, and serves its packed model otherwise."""

from __future__ import annotations

from serving_models import build_iris, register_servable

from vigil.config import load
from serving.source import locate
from serving.swap.reload import follows_alias


def test_a_bento_serves_its_packed_model_unless_vigil_model_names_an_alias(tmp_path):
    packed = build_iris(tmp_path / "packed").folder
    bare = load({"VIGIL_HOME": str(tmp_path / "a")})
    assert locate(bare, packed).origin == "bento" and follows_alias(bare, packed=True) is None

    settings = load({"VIGIL_HOME": str(tmp_path / "b"), "VIGIL_MODEL": "models:/iris@champion"})
    version = register_servable(settings, build_iris(tmp_path / "v1").folder, "iris")
    found = locate(settings, packed)
    assert found.origin == f"models:/iris/{version}" and found.path != packed
    assert str(follows_alias(settings, packed=True)) == "models:/iris@champion"

    # Registry out of reach and nothing cached: the packed model, marked degraded.
    away = load({"VIGIL_HOME": str(tmp_path / "c"), "VIGIL_MODEL": "models:/iris@champion",
                 "VIGIL_TRACKING_URI": "http://127.0.0.1:9"})
    fallback = locate(away, packed)
    assert fallback.path == packed and fallback.degraded and "unreachable" in fallback.degraded
