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
from fulqrun_ml.serving.nba_files import SUPPORT_FLOOR  # least choice probability an arm needs (endpoint too)

PROPENSITY_FLOOR = 0.02  # clip estimated propensities: a DR weight above 50 is noise, not information
OUTCOME_C = 0.1  # inverse L2 strength of the logistic nuisances (standardised inputs)
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
    return LogisticRegression(C=OUTCOME_C, max_iter=500)


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


def action_design(x: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The pooled outcome model's input: state, one-hot non-reference arms of every component, and every arm x
    state interaction (so each arm has its own heterogeneous effect, while the state's main effect is learned
    once from all rows)."""
    arms = np.concatenate(
        [(actions[:, [j]] == np.arange(1, len(a))[None, :]).astype(float) for j, a in enumerate(COMPONENTS.values())],
        axis=1,
    )
    interactions = (arms[:, :, None] * x[:, None, :]).reshape(len(x), -1)
    return np.concatenate([x, arms, interactions], axis=1)


@dataclass
class Nuisance:
    """Cross-fitted outcome and propensity models.

    The outcome model is one logistic regression over state, arms and arm x state (`action_design`) per fold:
    pooling matters because a T-learner that fits each arm separately subtracts two noisy models (on the
    simulator its effects missed the truth by an RMSE of 0.06-0.17 in probability, depending on the base learner).
    `mu[c]` and `e[c]` are the out-of-fold predictions on the training rows, [N, n_arms]: P(win | x, arm a of
    component c, the row's logged other components) and P(arm | x)."""

    spec: FittedFeatureSpec
    outcome_models: list[LogisticRegression]  # one per fold
    propensity_models: dict[str, list[LinearModel]]  # [component][fold]
    mu: dict[str, np.ndarray]
    e: dict[str, np.ndarray]

    def outcome(self, states: pd.DataFrame, actions: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """P(win | x, arm) per component arm for new rows, the other components as logged in `actions` (or at
        their reference when None); fold models averaged."""
        x = design(self.spec, states)
        if actions is None:
            actions = np.zeros((len(x), len(COMPONENTS)), dtype=int)
        return arm_outcomes(self.outcome_models, x, actions)

    def propensity(self, states: pd.DataFrame) -> dict[str, np.ndarray]:
        return propensities(self.spec, self.propensity_models, states)


def arm_outcomes(models: list[LogisticRegression], x: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
    """Each component arm swapped into `actions` in turn, scored by the (averaged) outcome models."""
    out = {}
    for j, (c, arms) in enumerate(COMPONENTS.items()):
        columns = []
        for a in range(len(arms)):
            changed = actions.copy()
            changed[:, j] = a
            features = action_design(x, changed)
            columns.append(np.mean([m.predict_proba(features)[:, 1] for m in models], axis=0))
        out[c] = np.stack(columns, axis=1)
    return out


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


def fit_nuisance(states: pd.DataFrame, actions: np.ndarray, won: np.ndarray, seed: int = 0, folds: int = 2) -> Nuisance:
    """Cross-fitted pooled outcome models (the T-learner's arm outcomes) and per-component propensity models."""
    spec = STATE_SPEC.fit(states)
    x = design(spec, states)
    y = np.asarray(won, dtype=int)
    fold = _folds(len(x), folds, seed)
    features = action_design(x, actions)
    outcome_models: list[LogisticRegression] = []
    propensity_models: dict[str, list] = {c: [] for c in COMPONENTS}
    mu = {c: np.zeros((len(x), len(arms))) for c, arms in COMPONENTS.items()}
    e = {c: np.zeros((len(x), len(arms))) for c, arms in COMPONENTS.items()}
    for k in range(folds):
        train, held = fold != k, fold == k
        model = _linear().fit(features[train], y[train])
        outcome_models.append(model)
        for c, block in arm_outcomes([model], x[held], actions[held]).items():
            mu[c][held] = block
        for j, (c, arms) in enumerate(COMPONENTS.items()):
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
