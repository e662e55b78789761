"""The gate judges every version on the model's fixed evaluation set, at the default tolerance (0).

Real registry, real converter. A retraining on mislabelled rows is refused although it
scores better on its own (mislabelled) recent data; a retraining on clean rows of a
model first trained on noisy labels passes and is promoted; a version trained by hand
on another split is re-scored on the fixed rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converter import convert_version
from lifecycle import fair
from lifecycle import gate
from lifecycle.datasets import load_dataset
from lifecycle.evaluate import holdout_metrics
from lifecycle.moves import champion_version, promote
from lifecycle.retrain import retrain
from lifecycle.training import train
from vigil import artifacts as A
from vigil.config import Settings, load, replace
from vigil.registry import connect
from helpers import clone_home


def _iris() -> "object":
    X, y, _ = load_dataset("iris")
    return X.assign(target=y)


def _rotated(frame, share: float, seed: int):
    """`frame` with the label of a `share` of its rows moved to the next class."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(frame)) < share
    out = frame.copy()
    out.loc[wrong, "target"] = (out.loc[wrong, "target"] + 1) % 3
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """iris (trained on clean rows) and iris-noisy (35% wrong labels, clean fixed holdout), both champions."""
    settings = load({"VIGIL_HOME": str(tmp_path_factory.mktemp("vigil-home")), "VIGIL_AUTO_PROMOTE": "1"})
    assert settings.gate_tolerance == 0.0  # the default: nothing below is loosened
    good = train(settings, reference_rows=500)
    frame = _iris()
    holdout = frame.sample(30, random_state=5)
    noisy_csv = tmp_path_factory.mktemp("data") / "iris-noisy.csv"
    _rotated(frame.drop(holdout.index), 0.35, seed=2).to_csv(noisy_csv, index=False)
    noisy = train(settings, csv=noisy_csv, target="target", reference_rows=500, holdout=holdout)
    for version in (good, noisy):
        convert_version(settings, f"models:/{version.name}/{version.version}", progress=False)
        promote(settings, version.name, version.version, "production", reason="first champion")
    return settings


@pytest.fixture
def settings(registry: Settings, tmp_path: Path) -> Settings:
    return clone_home(registry, tmp_path / "home")


def test_a_retraining_on_mislabelled_rows_is_refused_on_the_fixed_holdout(settings: Settings, tmp_path: Path) -> None:
    recent = tmp_path / "wrong.csv"
    wrong = _rotated(_iris(), 1.0, seed=0)
    wrong.loc[np.repeat(wrong.index, 2)].to_csv(recent, index=False)  # 300 rows, every label wrong
    result = retrain(settings, "iris", recent=recent, auto_promote=True)
    assert result.verdict is not None and result.verdict.failures() == ["holdout accuracy"]
    assert result.stage == "staging" and champion_version(settings, "iris") == "1"
    row = next(r for r in result.verdict.rows if r.check == "holdout accuracy")
    assert float(row.candidate) < float(row.champion) and "(fixed holdout)" in row.required
    # On its own recent rows the bad candidate looks better: only the fixed rows expose it.
    assert result.candidate_recent is not None and result.champion_recent is not None
    assert result.candidate_recent > result.champion_recent
    client = connect(settings)
    tags = client.get_model_version("iris", result.version).tags
    assert tags[A.TAG_HOLDOUT_DIGEST] == client.get_registered_model("iris").tags[A.TAG_HOLDOUT_DIGEST]


def test_a_retraining_on_clean_rows_beats_a_noisy_champion_and_is_promoted(settings: Settings, tmp_path: Path) -> None:
    client = connect(settings)
    fixed_run, rows = fair.fixed_holdout(client, "iris-noisy")  # type: ignore[misc]
    holdout = fair.load_holdout(client, fixed_run)
    recent = tmp_path / "clean.csv"
    _iris().sample(120, random_state=3).to_csv(recent, index=False)
    result = retrain(settings, "iris-noisy", recent=recent, auto_promote=True)
    assert result.verdict is not None and result.verdict.passed, result.verdict.to_dict()
    assert result.stage == "production" and champion_version(settings, "iris-noisy") == result.version
    row = next(r for r in result.verdict.rows if r.check == "holdout accuracy")
    assert float(row.candidate) > float(row.champion)
    # The candidate never trained on an evaluation row, and its score is its model's on those rows.
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(f"models:/iris-noisy/{result.version}")
    scored = holdout_metrics(model, "classification", holdout.drop(columns="target"), holdout["target"])
    assert float(row.candidate) == pytest.approx(scored["accuracy"], abs=5e-5)
    assert client.get_model_version("iris-noisy", result.version).tags[A.TAG_HOLDOUT_DIGEST] == rows


def test_a_version_trained_on_another_split_is_re_scored_on_the_fixed_rows(settings: Settings, tmp_path: Path) -> None:
    client = connect(settings)
    other = train(settings, seed=7, reference_rows=500)  # its own holdout is a different split
    candidate = client.get_model_version("iris", other.version)
    champion = client.get_model_version("iris", "1")
    assert candidate.tags[A.TAG_HOLDOUT_DIGEST] != champion.tags[A.TAG_HOLDOUT_DIGEST]
    pair = fair.holdout_pair(client, candidate, champion, "accuracy")
    assert pair.rows == "fixed holdout, re-scored"
    import mlflow.sklearn

    holdout = fair.load_holdout(client, fair.fixed_holdout(client, "iris")[0])  # type: ignore[index]
    model = mlflow.sklearn.load_model(f"models:/iris/{other.version}")
    expected = holdout_metrics(model, "classification", holdout.drop(columns="target"), holdout["target"])["accuracy"]
    assert pair.candidate == pytest.approx(expected) and pair.champion == gate.metric_of(champion, "accuracy")
    # A hand-trained version with shuffled labels is refused at the default tolerance.
    shuffled = tmp_path / "iris.csv"
    frame = _iris()
    frame.assign(target=frame["target"].sample(frac=1.0, random_state=0).to_numpy()).to_csv(shuffled, index=False)
    bad = train(settings, csv=shuffled, target="target", name="iris")
    convert_version(settings, f"models:/iris/{bad.version}", progress=False)
    verdict = gate.evaluate(settings, client.get_model_version("iris", bad.version), champion)
    assert verdict.failures() == ["holdout accuracy"]


def test_drift_that_changes_the_answers_moves_the_evaluation_set_when_asked(settings: Settings, tmp_path: Path) -> None:
    X, y, _ = load_dataset("iris")
    shifted = (X + 0.8 * X.std()).round(3).assign(target=y)  # same labels, moved inputs: the answers changed
    recent = tmp_path / "shifted.csv"
    shifted.to_csv(recent, index=False)
    kept = retrain(settings, "iris", recent=recent, auto_promote=True)
    assert kept.verdict is not None and kept.verdict.failures() == ["holdout accuracy"]  # old rows: v1 is right

    moved = retrain(replace(settings, retrain_refresh_holdout=True), "iris", recent=recent, auto_promote=True)
    assert moved.verdict is not None and moved.verdict.passed, moved.verdict.to_dict()
    row = next(r for r in moved.verdict.rows if r.check == "holdout accuracy")
    assert "re-scored" in row.required and float(row.candidate) > float(row.champion)
    client = connect(settings)
    fixed_run, rows = fair.fixed_holdout(client, "iris")  # type: ignore[misc]
    assert fixed_run == moved.run_id and len(fair.load_holdout(client, fixed_run)) == 45  # 30% of 150 recent rows
    assert client.get_model_version("iris", moved.version).tags[A.TAG_HOLDOUT_DIGEST] == rows


def test_a_version_the_fixed_rows_cannot_score_is_compared_on_its_own_holdout_and_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    from lifecycle.datasets import make_mixed_demo_frame

    csv = tmp_path / "other.csv"
    make_mixed_demo_frame(200).to_csv(csv, index=False)  # other features: the iris rows cannot feed it
    other = train(settings, csv=csv, target="target", name="iris")
    client = connect(settings)
    pair = fair.holdout_pair(client, client.get_model_version("iris", other.version),
                             client.get_model_version("iris", "1"), "accuracy")
    assert pair.rows.startswith("own holdouts, fixed one unusable") and "lacks" in pair.rows, pair.rows
    assert pair.candidate == other.metrics["accuracy"]
