"""Stages, the promotion gate and rollback on a real SQLite-backed MLflow registry."""

from __future__ import annotations

import pytest

from converter import convert_version
from lifecycle import stages as S
from lifecycle.errors import GateRefused, LifecycleError
from lifecycle.moves import archive, champion_version, demote, promote, rollback, versions
from lifecycle.training import train
from vigil import artifacts as A
from cli.main import main
from vigil.config import Settings, load, replace
from vigil.registry import connect
from helpers import clone_home


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """iris v1 (logreg), v2 (random forest), v3 (logreg, left unconverted); no stages yet."""
    settings = load({"VIGIL_HOME": str(tmp_path_factory.mktemp("vigil-home")), "VIGIL_ACTOR": "alice"})
    for estimator in ("logreg", "random-forest"):
        result = train(settings, estimator=estimator, reference_rows=50)
        convert_version(settings, f"models:/iris/{result.version}", progress=False)
    train(settings, reference_rows=50)
    return settings


@pytest.fixture
def settings(registry: Settings, tmp_path) -> Settings:
    """This test's own copy of the registry."""
    return clone_home(registry, tmp_path / "home")


def _v2_champion_after_v1(settings: Settings) -> None:
    """v1 was the first champion, v2 replaced it (v1 archived)."""
    promote(settings, "iris", "1", "production", reason="first champion")
    promote(replace(settings, gate_tolerance=0.5), "iris", "2", "production", reason="forest")


def _aliases(settings: Settings) -> dict[str, str]:
    return {k: str(v) for k, v in connect(settings).get_registered_model("iris").aliases.items()}


def _stages(settings: Settings) -> dict[str, str]:
    return {row.version: row.stage for row in versions(settings, "iris")}


def test_round_trip_of_stages_with_history_on_the_registry(settings: Settings) -> None:
    first = promote(settings, "iris", "1", "production", reason="first champion")
    assert (first.from_stage, first.to_stage, first.actor, first.previous_champion) == (
        "development", "production", "alice", None)
    promote(settings, "iris", "2", "staging", reason="candidate")
    assert _aliases(settings) == {"champion": "1", "challenger": "2"}
    assert _stages(settings) == {"1": "production", "2": "staging", "3": "development"}

    promote(replace(settings, gate_tolerance=0.5), "iris", "2", "production", reason="forest")
    assert _aliases(settings) == {"champion": "2"}  # the challenger alias moved with it
    assert _stages(settings) == {"1": "archived", "2": "production", "3": "development"}

    back = rollback(settings, "iris", reason="latency regression")
    assert (back.version, back.previous_champion, back.kind) == ("1", "2", S.ROLLBACK)
    assert champion_version(settings, "iris") == "1"
    # Rolling back again returns to v2: the history, not this process, knows the previous champion.
    assert rollback(replace(settings, actor="bob"), "iris").version == "2"

    promote(settings, "iris", "1", "staging")
    assert demote(settings, "iris", "1", reason="not now").to_stage == "development"
    assert archive(settings, "iris", "3", reason="never converted").to_stage == "archived"
    assert _stages(settings) == {"1": "development", "2": "production", "3": "archived"}

    moves = S.history(connect(settings), "iris")
    assert [m.seq for m in moves] == list(range(1, len(moves) + 1))
    assert [(m.version, m.to_stage) for m in moves] == [
        ("1", "production"), ("2", "staging"), ("1", "archived"), ("2", "production"),
        ("2", "archived"), ("1", "production"), ("1", "archived"), ("2", "production"),
        ("1", "staging"), ("1", "development"), ("3", "archived"),
    ]
    assert {m.actor for m in moves} == {"alice", "bob"} and all(m.at > 0 for m in moves)
    row = {r.version: r for r in versions(settings, "iris")}["3"]
    assert row.last_move is not None and row.last_move.reason == "never converted"
    assert row.metrics["accuracy"] > 0.8 and row.parity == "-" and row.servable == "-"


def test_gate_refuses_a_worse_or_unconverted_version_and_force_is_recorded(settings: Settings) -> None:
    _v2_champion_after_v1(settings)
    client = connect(settings)
    champion = champion_version(settings, "iris")
    assert champion == "2"
    client.set_model_version_tag("iris", "1", A.TAG_METRIC_PREFIX + "accuracy", "0.5")  # clearly worse
    with pytest.raises(GateRefused, match="failed holdout accuracy") as info:
        promote(settings, "iris", "1", "production")
    assert [r.check for r in info.value.verdict.rows if not r.passed] == ["holdout accuracy"]
    assert champion_version(settings, "iris") == "2"

    with pytest.raises(GateRefused, match="failed parity, servable"):
        promote(replace(settings, gate_tolerance=1.0), "iris", "3", "production")

    # A tolerance that covers the gap lets it through; --force is recorded only when it mattered.
    forced = promote(settings, "iris", "1", "production", reason="hotfix", force=True)
    assert forced.forced and forced.previous_champion == "2"
    assert S.history(client, "iris")[-1].forced
    assert rollback(settings, "iris").version == "2"


def test_user_errors_name_the_problem(settings: Settings) -> None:
    _v2_champion_after_v1(settings)
    with pytest.raises(LifecycleError, match="iris has no version 42"):
        promote(settings, "iris", "42", "staging")
    with pytest.raises(LifecycleError, match="no registered model named 'nope'"):
        versions(settings, "nope")
    with pytest.raises(LifecycleError, match="cannot promote to 'prod'"):
        promote(settings, "iris", "1", "prod")
    with pytest.raises(LifecycleError, match="is the champion; demoting it leaves iris without one"):
        demote(settings, "iris", "2")
    with pytest.raises(LifecycleError, match="v3 is not servable"):
        rollback(settings, "iris", to="3")


def test_cli_prints_tables_and_one_line_errors(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _v2_champion_after_v1(settings)
    connect(settings).set_model_version_tag("iris", "1", A.TAG_METRIC_PREFIX + "accuracy", "0.5")  # clearly worse
    monkeypatch.setenv("VIGIL_HOME", str(settings.home))
    monkeypatch.setenv("VIGIL_ACTOR", "carol")
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["versions", "iris", "--history"]) == 0
    out = capsys.readouterr().out
    assert "registered versions" in out and "promotion history" in out and "production" in out

    assert main(["promote", "iris", "1", "--to", "production"]) == 2
    captured = capsys.readouterr()
    assert "promotion gate: iris v1 -> production: REFUSED" in captured.out
    assert captured.err.startswith("vigil promote: gate refused iris v1 for production") and "Traceback" not in captured.err

    assert main(["promote", "iris", "1", "--to", "staging", "--reason", "canary"]) == 0
    assert "iris v1: archived -> staging by carol: canary" in capsys.readouterr().out
    assert main(["rollback", "iris", "--to", "99"]) == 2
    assert capsys.readouterr().err.strip() == "vigil rollback: iris has no version 99"
