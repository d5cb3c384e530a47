"""Effect estimates -> ranked next best actions for open deals, each with its uplift, interval and a plain reason.

Why one module: the SDK, the CLI and (later) the served endpoint must rank and explain the same way. An action's
uplift is the sum of its components' estimated effects against the reference action (a routine email in 3-7 days,
afternoon, no content), in win probability and in expected revenue (x the deal's value); its interval adds the
components' ensemble spreads in quadrature. Only actions whose every component reps have used for similar deals
(the support mask) are ranked, and only action fields are ever set (`check_actionable`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator_actions import COMPONENTS
from fulqrun_ml.recommend.actions import action_frame, all_actions, check_actionable, effect_outputs

Z95 = 1.96


def action_matrix(actions: np.ndarray) -> np.ndarray:
    """[A, K] indicator: which non-reference arms each action uses."""
    outputs = effect_outputs()
    index = {o: k for k, o in enumerate(outputs)}
    matrix = np.zeros((len(actions), len(outputs)))
    for j, (c, arms) in enumerate(COMPONENTS.items()):
        used = actions[:, j] > 0
        matrix[np.flatnonzero(used), [index[(c, arms[a])] for a in actions[used, j]]] = 1.0
    return matrix


def rank_actions(
    states: pd.DataFrame, uplift: np.ndarray, sd: np.ndarray, support: np.ndarray, k: int = 5
) -> pd.DataFrame:
    """The top-k supported actions per deal by estimated uplift in win probability (the same order as expected
    revenue for one deal, since its value is fixed), one row per deal and rank."""
    actions = all_actions()
    matrix = action_matrix(actions)
    scores = uplift @ matrix.T
    spread = np.sqrt((sd**2) @ matrix.T)
    allowed = ((~support).astype(float) @ matrix.T) == 0
    scores_masked = np.where(allowed, scores, -np.inf)
    k = min(k, len(actions))
    top = np.argsort(-scores_masked, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(len(states)), k)
    chosen = top.reshape(-1)
    frame = action_frame(actions[chosen])
    check_actionable(frame.columns)
    value = states["value"].to_numpy(dtype=float)[rows]
    win = scores[rows, chosen]
    half = Z95 * spread[rows, chosen]
    out = pd.DataFrame(
        {
            "opportunity_id": states["opportunity_id"].to_numpy()[rows],
            "rank": np.tile(np.arange(1, k + 1), len(states)),
            **{c: frame[c].to_numpy() for c in frame.columns},
            "uplift_win_probability": win,
            "uplift_low": win - half,
            "uplift_high": win + half,
            "uplift_expected_revenue": win * value,
            "supported": allowed[rows, chosen],
        }
    )
    out["reason"] = [_reason(states.iloc[r], uplift[r], a) for r, a in zip(rows, actions[chosen], strict=True)]
    return out


def _reason(state: pd.Series, effects: np.ndarray, action: np.ndarray) -> str:
    """The components that carry the uplift, largest first, and the deal facts effects depend on."""
    outputs = effect_outputs()
    parts = []
    for j, (c, arms) in enumerate(COMPONENTS.items()):
        if action[j] > 0:
            effect = effects[outputs.index((c, arms[action[j]]))]
            parts.append((effect, f"{arms[action[j]]} {100 * effect:+.1f} pts"))
    parts.sort(reverse=True)
    carried = ", ".join(p for _, p in parts) or "no change from the routine email"
    facts = f"{state['stage']} stage, {state['size']}, {state['industry']}, {int(state['meddpicc_gaps'])} MEDDPICC gaps"
    return f"{carried} vs a routine email in 3-7 days; deal: {facts}"
