"""Causal learners for action effects from logged history: T-learner, doubly robust pseudo-outcomes, and the naive
"predictive model's sensitivity" they are compared with.

Why per component: an action has four components (type x channel, gap, slot, content) with 8 x 3 x 2 x 7 = 336
combinations, far too many arms to learn one by one from a few thousand logged deals. Each component is treated
as a multi-arm treatment against its reference arm (a routine email, in 3-7 days, in the afternoon, no content);
the other components' choices are part of the noise. Effects are then added over components, which is exact in
the simulator's log-odds and an approximation on the probability scale (docs/recommendations.md).

Nuisance models are regularised logistic regressions (scikit-learn), cross-fitted over `folds` so
that a row's pseudo-outcome never uses a model that saw it; for new rows the fold models are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from fulqrun_ml.data.simulator_actions import COMPONENTS
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.recommend.actions import CATEGORICAL_STATE, NUMERIC_STATE, STATE_SPEC

PROPENSITY_FLOOR = 0.02  # clip estimated propensities: a DR weight above 50 is noise, not information
SUPPORT_FLOOR = 0.05  # the least historical choice probability an arm needs to be recommended
_TREES = {
    "n_estimators": 60,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 20,
    "verbose": -1,
    "n_jobs": 2,
}


def lgbm_matrix(states: pd.DataFrame, actions: np.ndarray | None = None) -> pd.DataFrame:
    """State columns (categoricals as pandas categories with a fixed vocabulary order), optionally the action
    components as integer columns (the S-learner's input)."""
    frame = states[list(NUMERIC_STATE)].astype(float).copy()
    for name in CATEGORICAL_STATE:
        frame[name] = pd.Categorical(states[name].astype(str))
    if actions is not None:
        for j, c in enumerate(COMPONENTS):
            frame[f"action_{c}"] = actions[:, j]
    return frame


def _align(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Give new rows the training categories, so LightGBM codes them the same way."""
    frame = frame.copy()
    for name in CATEGORICAL_STATE:
        frame[name] = pd.Categorical(frame[name].astype(str), categories=reference[name].cat.categories)
    return frame


def design(spec: FittedFeatureSpec, states: pd.DataFrame) -> np.ndarray:
    """The linear models' input: the FeatureSpec's standardised numerics next to one-hot categoricals (the same
    encoding the effect network and its ONNX graph use, so a served support check needs no other encoder)."""
    arrays = spec.encode(states)
    one_hot = [np.eye(n)[arrays["categorical"][:, j]] for j, n in enumerate(spec.cardinalities)]
    return np.concatenate([arrays["continuous"], *one_hot], axis=1)


def _linear() -> LogisticRegression:
    """A regularised logistic model. Why not trees here: a T-learner subtracts two separately fitted models, so
    their noise adds; boosted trees fitted per arm on a few hundred rows missed the true effects by ~0.17 in
    probability on the simulator, the smooth logistic nuisances by far less (docs/recommendations.md)."""
    return LogisticRegression(C=1.0, max_iter=500)


@dataclass
class LinearModel:
    """A fitted logistic model as plain numbers, for the registry (JSON, no pickle) and the served support check."""

    classes: list[int]
    coef: list[list[float]]
    intercept: list[float]

    @classmethod
    def of(cls, model: LogisticRegression) -> LinearModel:
        return cls([int(c) for c in model.classes_], model.coef_.tolist(), model.intercept_.tolist())

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Exactly sklearn's predict_proba: sigmoid for two classes, softmax otherwise."""
        scores = x @ np.asarray(self.coef).T + np.asarray(self.intercept)
        if len(self.classes) == 2:
            p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1 - p, p], axis=1)
        scores -= scores.max(axis=1, keepdims=True)
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def _folds(n: int, folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % folds


@dataclass
class Nuisance:
    """Cross-fitted outcome models per component arm and propensity models per component.

    `mu[c]` and `e[c]` are the out-of-fold predictions on the training rows, [N, n_arms]."""

    spec: FittedFeatureSpec
    outcome_models: dict[str, list[list[LogisticRegression | float]]]  # [component][fold][arm]
    propensity_models: dict[str, list[LinearModel]]  # [component][fold]
    mu: dict[str, np.ndarray]
    e: dict[str, np.ndarray]

    def outcome(self, states: pd.DataFrame) -> dict[str, np.ndarray]:
        """P(win | x, component arm) per component for new rows (fold models averaged)."""
        x = design(self.spec, states)
        return {
            c: np.mean([[_proba(m, x) for m in models] for models in fold_models], axis=0).T
            for c, fold_models in self.outcome_models.items()
        }

    def propensity(self, states: pd.DataFrame) -> dict[str, np.ndarray]:
        return propensities(self.spec, self.propensity_models, states)


def propensities(
    spec: FittedFeatureSpec, models: dict[str, list[LinearModel]], states: pd.DataFrame
) -> dict[str, np.ndarray]:
    """The historical choice probabilities per component arm, [N, n_arms] each (fold models averaged)."""
    x = design(spec, states)
    out = {}
    for c, fold_models in models.items():
        proba = np.zeros((len(x), len(COMPONENTS[c])))
        for model in fold_models:
            proba[:, model.classes] += model.predict_proba(x) / len(fold_models)
        out[c] = proba
    return out


def _proba(model: LogisticRegression | float, x: np.ndarray) -> np.ndarray:
    if isinstance(model, float):  # an arm with one class only in a fold: its rate
        return np.full(len(x), model)
    return model.predict_proba(x)[:, 1]


def fit_nuisance(states: pd.DataFrame, actions: np.ndarray, won: np.ndarray, seed: int = 0, folds: int = 2) -> Nuisance:
    """Cross-fitted per-arm outcome models (the T-learner) and per-component propensity models."""
    spec = STATE_SPEC.fit(states)
    x = design(spec, states)
    y = np.asarray(won, dtype=int)
    fold = _folds(len(x), folds, seed)
    outcome_models: dict[str, list[list]] = {}
    propensity_models: dict[str, list] = {}
    mu, e = {}, {}
    for j, (c, arms) in enumerate(COMPONENTS.items()):
        mu[c] = np.zeros((len(x), len(arms)))
        e[c] = np.zeros((len(x), len(arms)))
        outcome_models[c], propensity_models[c] = [], []
        for k in range(folds):
            train, held = fold != k, fold == k
            models = []
            for a in range(len(arms)):
                rows = train & (actions[:, j] == a)
                if len(np.unique(y[rows])) < 2:
                    model: LogisticRegression | float = float(y[rows].mean()) if rows.any() else float(y.mean())
                else:
                    model = _linear().fit(x[rows], y[rows])
                models.append(model)
                mu[c][held, a] = _proba(model, x[held])
            outcome_models[c].append(models)
            propensity = LinearModel.of(_linear().fit(x[train], actions[train, j]))
            block = np.zeros((held.sum(), len(arms)))
            block[:, propensity.classes] = propensity.predict_proba(x[held])
            e[c][held] = block
            propensity_models[c].append(propensity)
    return Nuisance(spec, outcome_models, propensity_models, mu, e)


def t_learner_effects(nuisance: Nuisance, states: pd.DataFrame) -> np.ndarray:
    """mu_arm(x) - mu_reference(x) for every non-reference arm, [N, K] in `effect_outputs()` order."""
    mu = nuisance.outcome(states)
    return np.concatenate([mu[c][:, 1:] - mu[c][:, :1] for c in COMPONENTS], axis=1)


def dr_pseudo_outcomes(
    mu_all: dict[str, np.ndarray], e_all: dict[str, np.ndarray], actions: np.ndarray, won: np.ndarray
) -> np.ndarray:
    """The doubly robust (AIPW) pseudo-outcome of every arm against its reference, [N, K]: regressing it on x
    gives the DR-learner (Kennedy 2023). On training rows pass the out-of-fold nuisances (`nuisance.mu`, `.e`)."""
    y = np.asarray(won, dtype=float)
    columns = []
    for j, c in enumerate(COMPONENTS):
        mu, e = mu_all[c], np.clip(e_all[c], PROPENSITY_FLOOR, 1.0)
        took = actions[:, j]
        ref = (took == 0) / e[:, 0] * (y - mu[:, 0])
        for a in range(1, mu.shape[1]):
            columns.append(mu[:, a] - mu[:, 0] + (took == a) / e[:, a] * (y - mu[:, a]) - ref)
    return np.stack(columns, axis=1)


@dataclass
class SensitivityModel:
    """The naive approach: one predictive win model on state + action columns, read for its sensitivity to the
    action columns (what a "do what winners did" engine learns). It is also the outcome model of the DR
    off-policy estimate, `predict(states, actions)`."""

    model: lgb.LGBMClassifier
    reference: pd.DataFrame

    def predict(self, states: pd.DataFrame, actions: np.ndarray) -> np.ndarray:
        x = _align(lgbm_matrix(states, actions), self.reference)
        return self.model.predict_proba(x)[:, 1]

    def effects(self, states: pd.DataFrame) -> np.ndarray:
        """P(win | x, arm, others at reference) - P(win | x, reference), [N, K]."""
        base_actions = np.zeros((len(states), len(COMPONENTS)), dtype=int)
        base = self.predict(states, base_actions)
        columns = []
        for j, arms in enumerate(COMPONENTS.values()):
            for a in range(1, len(arms)):
                changed = base_actions.copy()
                changed[:, j] = a
                columns.append(self.predict(states, changed) - base)
        return np.stack(columns, axis=1)


def fit_sensitivity(states: pd.DataFrame, actions: np.ndarray, won: np.ndarray, seed: int = 0) -> SensitivityModel:
    x = lgbm_matrix(states, actions)
    model = lgb.LGBMClassifier(random_state=seed, **_TREES).fit(x, np.asarray(won, dtype=int))
    return SensitivityModel(model, x)


def additive_uplift(effects: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Per-row uplift of an action (vs the all-reference action): the sum of its components' effects."""
    columns = np.cumsum([0] + [len(a) - 1 for a in COMPONENTS.values()])
    total = np.zeros(len(actions))
    for j in range(len(COMPONENTS)):
        chosen = actions[:, j] > 0
        index = columns[j] + actions[chosen, j] - 1
        total[chosen] += effects[np.flatnonzero(chosen), index]
    return total


def supported(e: dict[str, np.ndarray], floor: float = SUPPORT_FLOOR) -> np.ndarray:
    """[N, K] mask of arms that reps chose for similar deals with probability >= `floor`.

    Why: an effect estimated where the history holds almost no such action is an extrapolation (a proposal at
    prospecting is rare, so its outcome model borrows from late-stage deals); a policy stays on the support."""
    return np.concatenate([e[c][:, 1:] >= floor for c in COMPONENTS], axis=1)


def best_actions(effects: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """The per-row action maximising the additive uplift: per component, the best arm or the reference; arms off
    the `support` mask are never chosen."""
    columns = np.cumsum([0] + [len(a) - 1 for a in COMPONENTS.values()])
    if support is not None:
        effects = np.where(support, effects, -np.inf)
    picks = []
    for j in range(len(COMPONENTS)):
        block = np.concatenate([np.zeros((len(effects), 1)), effects[:, columns[j] : columns[j + 1]]], axis=1)
        picks.append(block.argmax(axis=1))
    return np.stack(picks, axis=1)
