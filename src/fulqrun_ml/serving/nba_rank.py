"""Next-best-action ranking for the served endpoint: per-arm uplifts in, the top-k actions, intervals, reasons out.

Why here, in numpy: the Triton Python stub runs `serving/python_nba/model.py`, which may import only numpy and
onnxruntime (the hot path carries no pandas, no training code). It is the only copy of the ranking:
`recommend/ranking.py` (SDK, bulk CLI) adapts it to DataFrames, so the served and in-process answers cannot drift.
The repository builder copies this file next to the backend's model.py (loaded by path, like prediction_spool.py).
`propensities` / `supported` / `design` mirror `recommend/learners.py` on plain arrays;
tests/integration/test_recommend_serving.py checks that served answers equal the in-process SDK's.

Everything the ranking needs about the action space comes from `table` (nba_serving.json, written when the
repository is generated): the components and their arms (the first arm is the reference), the support floor,
and the interval's z. Keep this file free of imports beyond numpy and the standard library.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

ACTION_KEYS = ("rank", "uplift_win_probability", "uplift_low", "uplift_high", "uplift_expected_revenue", "supported")


class ActionSpace:
    """The arms of every component, every combination of them and which effect columns each combination uses."""

    def __init__(self, components: dict[str, list[str]], support_floor: float, z: float) -> None:
        self.components = {c: list(arms) for c, arms in components.items()}
        self.support_floor = float(support_floor)
        self.z = float(z)
        self.outputs = [(c, arm) for c, arms in self.components.items() for arm in arms[1:]]
        self.output_index = {o: k for k, o in enumerate(self.outputs)}
        # Same order as recommend.actions.all_actions: itertools.product over the components' arm indices.
        self.actions = np.array(list(itertools.product(*(range(len(a)) for a in self.components.values()))), dtype=int)
        self.matrix = np.zeros((len(self.actions), len(self.outputs)))
        for j, (c, arms) in enumerate(self.components.items()):
            used = self.actions[:, j] > 0
            columns = [self.output_index[(c, arms[a])] for a in self.actions[used, j]]
            self.matrix[np.flatnonzero(used), columns] = 1.0

    def propensities(self, x: np.ndarray, models: dict[str, list[dict[str, Any]]]) -> dict[str, np.ndarray]:
        """Historical choice probabilities per component arm, fold models averaged (learners.propensities)."""
        out = {}
        for c, fold_models in models.items():
            proba = np.zeros((len(x), len(self.components[c])))
            for model in fold_models:
                proba[:, model["classes"]] += _predict_proba(model, x) / len(fold_models)
            out[c] = proba
        return out

    def supported(self, e: dict[str, np.ndarray]) -> np.ndarray:
        """[N, K] arms reps chose for similar deals with probability >= the floor (learners.supported)."""
        return np.concatenate([e[c][:, 1:] >= self.support_floor for c in self.components], axis=1)

    def rank(
        self, uplift: np.ndarray, sd: np.ndarray, support: np.ndarray, facts: list[dict[str, Any]], k: int
    ) -> list[list[dict[str, Any]]]:
        """The top-k supported actions per row, best first, as dicts (ranking.rank_actions without pandas).

        `facts[r]` holds row r's `value`, `stage`, `size`, `industry` and `meddpicc_gaps` (for revenue and reason)."""
        scores = uplift @ self.matrix.T
        spread = np.sqrt((sd**2) @ self.matrix.T)
        allowed = ((~support).astype(float) @ self.matrix.T) == 0
        masked = np.where(allowed, scores, -np.inf)
        k = min(k, len(self.actions))
        top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        answers = []
        for r, chosen in enumerate(top):
            rows = []
            for rank, a in enumerate(chosen, start=1):
                win = float(scores[r, a])
                half = self.z * float(spread[r, a])
                action = self.actions[a]
                row: dict[str, Any] = {"rank": rank}
                row.update({c: arms[action[j]] for j, (c, arms) in enumerate(self.components.items())})
                row.update(
                    uplift_win_probability=win,
                    uplift_low=win - half,
                    uplift_high=win + half,
                    uplift_expected_revenue=win * float(facts[r]["value"]),
                    supported=bool(allowed[r, a]),
                    reason=self.reason(facts[r], uplift[r], action),
                )
                rows.append(row)
            answers.append(rows)
        return answers

    def reason(self, fact: dict[str, Any], effects: np.ndarray, action: np.ndarray) -> str:
        """The components that carry the uplift, largest first, and the deal facts effects depend on."""
        parts = []
        for j, (c, arms) in enumerate(self.components.items()):
            if action[j] > 0:
                effect = effects[self.output_index[(c, arms[action[j]])]]
                parts.append((effect, f"{arms[action[j]]} {100 * effect:+.1f} pts"))
        parts.sort(reverse=True)
        carried = ", ".join(p for _, p in parts) or "no change from the routine email"
        facts = f"{fact['stage']} stage, {fact['size']}, {fact['industry']}, {int(fact['meddpicc_gaps'])} MEDDPICC gaps"
        return f"{carried} vs a routine email in 3-7 days; deal: {facts}"


def design(continuous: np.ndarray, categorical: np.ndarray, cardinalities: list[int]) -> np.ndarray:
    """Standardised numerics next to one-hot categoricals: the propensity models' input (learners.design)."""
    one_hot = [np.eye(n)[categorical[:, j]] for j, n in enumerate(cardinalities)]
    return np.concatenate([continuous, *one_hot], axis=1)


def _predict_proba(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Exactly learners.LinearModel.predict_proba (sklearn's): sigmoid for two classes, softmax otherwise."""
    scores = x @ np.asarray(model["coef"]).T + np.asarray(model["intercept"])
    if len(model["classes"]) == 2:
        p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1 - p, p], axis=1)
    scores -= scores.max(axis=1, keepdims=True)
    return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
