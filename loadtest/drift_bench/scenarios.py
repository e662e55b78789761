"""Three data sets with stable, harmless and harmful windows, each with its model.

- `seasonal`: daily weather measurements over decades, generated here (a yearly cycle, a
  slow warming trend) and a heating-demand regressor. Harmless: the later years (the trend
  moves the inputs, the linear model still fits). Harmful: the temperature sensor is
  replaced by one reporting Fahrenheit.
- `cancer`: sklearn's breast-cancer data and a logistic regression. Harmless: the features
  the model uses least drift further and further. Harmful: the five it uses most shift by
  one standard deviation.
- `agrawal`: river's Agrawal stream (classes balanced) and a decision tree. Harmless: the
  money amounts the model ignores inflate window by window. Harmful: the labelling
  function changes (0 -> 4); only the selection of rows by the balanced generator moves the
  inputs, so features barely drift and the predictions do.

Every scenario: 20 stable windows drawn from the reference's own distribution, 14 harmless
ones in order, 5 harmful ones in order, W rows each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

STABLE, HARMLESS, HARMFUL = 20, 14, 5


@dataclass
class Scenario:
    name: str
    description: str
    task: str
    reference: pd.DataFrame  # features + target
    holdout: pd.DataFrame  # features + target, for importance and the reference score
    predict: Callable[[pd.DataFrame], np.ndarray]
    estimator: Any
    features: list[str]
    stable: list[pd.DataFrame] = field(default_factory=list)
    harmless: list[pd.DataFrame] = field(default_factory=list)
    harmful: list[pd.DataFrame] = field(default_factory=list)
    window: int = 500


def _weather(days: np.ndarray, rng: np.random.Generator, trend_per_year: float = 0.04) -> pd.DataFrame:
    years = days / 365.25
    temp = 11 + 8 * np.sin(2 * np.pi * years) + trend_per_year * years + rng.normal(0, 2.5, len(days))
    humidity = np.clip(70 - 1.2 * (temp - 11) + rng.normal(0, 8, len(days)), 5, 100)
    pressure = 1013 + 0.02 * years + rng.normal(0, 7, len(days))
    wind = rng.gamma(2.0, 2.5, len(days))
    demand = 120 - 4.0 * temp + 1.5 * wind + 0.1 * humidity + rng.normal(0, 4, len(days))
    return pd.DataFrame({"temp": temp, "humidity": humidity, "pressure": pressure, "wind": wind, "target": demand})


def seasonal(window: int = 500, seed: int = 0) -> Scenario:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    ref_days = 5000  # ~14 years of reference
    data = _weather(np.arange(ref_days + HARMLESS * window + HARMFUL * window, dtype=float), rng)
    features = ["temp", "humidity", "pressure", "wind"]
    reference, later = data.iloc[:ref_days].reset_index(drop=True), data.iloc[ref_days:].reset_index(drop=True)
    holdout = reference.sample(1000, random_state=seed)
    model = LinearRegression().fit(reference[features], reference["target"])
    s = Scenario("seasonal", "generated daily weather over decades, heating-demand regressor", "regression",
                 reference, holdout, lambda f: model.predict(f[features]), model, features, window=window)
    s.stable = [reference.sample(window, replace=True, random_state=seed + 100 + i).reset_index(drop=True)
                for i in range(STABLE)]
    s.harmless = [later.iloc[i * window:(i + 1) * window].reset_index(drop=True) for i in range(HARMLESS)]
    for i in range(HARMFUL):
        w = later.iloc[(HARMLESS + i) * window:(HARMLESS + i + 1) * window].reset_index(drop=True).copy()
        w["temp"] = w["temp"] * 1.8 + 32  # the new sensor reports Fahrenheit; the demand itself is unchanged
        s.harmful.append(w)
    return s


def cancer(window: int = 500, seed: int = 0) -> Scenario:
    from sklearn.datasets import load_breast_cancer
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    features = [str(c) for c in X.columns]
    frame = X.assign(target=y.to_numpy())
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    rng = np.random.default_rng(seed)
    s = Scenario("cancer", "sklearn breast cancer (569 rows, 30 features), logistic regression", "classification",
                 frame, frame, lambda f: model.predict(f[features]), model, features, window=window)
    order = np.argsort(permutation_importance(model, X, y, n_repeats=5, random_state=seed).importances_mean)
    weakest, strongest = [features[i] for i in order[:18]], [features[i] for i in order[-5:]]
    sd = X.std()

    def draw(i: int) -> pd.DataFrame:
        w = frame.sample(window, replace=True, random_state=seed + 1000 + i).reset_index(drop=True)
        w[features] = w[features] * rng.normal(1.0, 0.01, size=(window, len(features)))  # measurement jitter
        return w

    s.stable = [draw(i) for i in range(STABLE)]
    for j in range(HARMLESS):
        w = draw(100 + j)
        w[weakest] = w[weakest] + 0.05 * (j + 1) * sd[weakest]  # up to 0.7 sd on 18 of 30 features
        s.harmless.append(w)
    for j in range(HARMFUL):
        w = draw(200 + j)
        w[strongest] = w[strongest] + 1.0 * sd[strongest]
        s.harmful.append(w)
    return s


def _agrawal(n: int, seed: int, function: int = 0) -> pd.DataFrame:
    from river.datasets import synth

    xs, ys = zip(*synth.Agrawal(classification_function=function, seed=seed, balance_classes=True).take(n))
    return pd.DataFrame([dict(x) for x in xs]).astype(float).assign(target=np.array(ys, dtype=int))


def agrawal(window: int = 500, seed: int = 0) -> Scenario:
    from sklearn.tree import DecisionTreeClassifier

    reference = _agrawal(5000, seed + 1)
    features = [c for c in reference.columns if c != "target"]
    model = DecisionTreeClassifier(max_depth=8, random_state=0).fit(reference[features], reference["target"])
    s = Scenario("agrawal", "river Agrawal (balanced), decision tree; harmful = labelling function 0 -> 4",
                 "classification", reference, _agrawal(1000, seed + 2), lambda f: model.predict(f[features]),
                 model, features, window=window)
    s.stable = [_agrawal(window, seed + 100 + i) for i in range(STABLE)]
    money = ["salary", "commission", "hvalue", "loan", "hyears"]  # function 0 reads age only
    for j in range(HARMLESS):
        w = _agrawal(window, seed + 200 + j)
        w[money] = w[money] * (1 + 0.02 * (j + 1))  # inflation, 2 % per window
        s.harmless.append(w)
    s.harmful = [_agrawal(window, seed + 300 + j, function=4) for j in range(HARMFUL)]
    return s


ALL = (seasonal, cancer, agrawal)
