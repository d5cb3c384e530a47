"""Skill gaps to coaching and training suggestions, each with the revenue at stake in the rep's open pipeline.

A gap is the rep's stage effect against peers (0 = the peer average with the same deal mix), shown as conversion
points at the rep's own deal mix. A suggestion needs confidence (posterior P(effect < 0) >= `min_confidence`)
and size (gap >= `min_gap_points`), so a rep with four deals is not told to retrain on noise. Revenue at stake =
sum over the rep's open deals now in that stage of value x (peer conversion - rep conversion) x the peer chance
of winning from the next stage on: what closing the gap would be worth on today's pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.recommend.coaching import TRAINING, CoachingConfig, StageEffects, design


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _open_rows(deals: pd.DataFrame, stage_index: int) -> pd.DataFrame:
    return deals.assign(stage_index=stage_index).reset_index(drop=True)


def revenue_at_stake(effects: StageEffects, deals: pd.DataFrame) -> pd.Series:
    """Per (rep_id, stage): value x conversion gap x downstream peer win chance over the rep's open deals."""
    open_deals = deals[~deals["closed"].astype(bool) & deals["current_stage"].isin(OPEN_STAGES)]
    cells = effects.cells.set_index(["rep_id", "stage"])["effect"]
    out: dict[tuple[str, str], float] = {}
    for k, stage in enumerate(OPEN_STAGES):
        here = open_deals[open_deals["current_stage"] == stage]
        if here.empty:
            continue
        etas = [design(_open_rows(here, j), effects.levels)[0] @ effects.beta for j in range(k, len(OPEN_STAGES))]
        downstream = np.prod([_sigmoid(e) for e in etas[1:]], axis=0) if len(etas) > 1 else np.ones(len(here))
        b = cells.reindex(pd.MultiIndex.from_arrays([here["rep_id"].astype(str), [stage] * len(here)])).fillna(0.0)
        loss = here["value"].to_numpy(dtype=float) * (_sigmoid(etas[0]) - _sigmoid(etas[0] + b.to_numpy()))
        per_rep = pd.Series(loss * downstream, index=here["rep_id"].astype(str).to_numpy()).groupby(level=0).sum()
        out |= {(rep, stage): float(v) for rep, v in per_rep.items()}
    return pd.Series(out, dtype=float)


def skill_gaps(effects: StageEffects, deals: pd.DataFrame, config: CoachingConfig) -> pd.DataFrame:
    """Every rep x stage cell with its gap in conversion points, interval, confidence and revenue at stake."""
    cells = effects.cells.copy()
    base = np.log(cells["expected_rate"] / (1 - cells["expected_rate"])).to_numpy()
    cells["gap_points"] = _sigmoid(base + cells["effect"].to_numpy()) - cells["expected_rate"]
    z = stats.norm.ppf(0.5 + config.interval / 2)
    cells["effect_low"] = cells["effect"] - z * cells["effect_sd"]
    cells["effect_high"] = cells["effect"] + z * cells["effect_sd"]
    cells["p_below_peers"] = stats.norm.cdf(-cells["effect"] / cells["effect_sd"])
    stake = revenue_at_stake(effects, deals)
    keys = pd.MultiIndex.from_frame(cells[["rep_id", "stage"]].astype(str))
    cells["revenue_at_stake"] = stake.reindex(keys).fillna(0.0).to_numpy()
    return cells


def suggestions(gaps: pd.DataFrame, config: CoachingConfig) -> pd.DataFrame:
    """The confident, material gaps as plain suggestions, largest revenue at stake first."""
    chosen = gaps[(gaps["p_below_peers"] >= config.min_confidence) & (gaps["gap_points"] <= -config.min_gap_points)]
    chosen = chosen.sort_values("revenue_at_stake", ascending=False).reset_index(drop=True)
    text = [
        f"converts {-gap * 100:.0f} pts below peers in {stage} on the same deal mix "
        f"({n} deals, {p * 100:.0f}% sure); training: {TRAINING[stage]}"
        for gap, stage, n, p in chosen[["gap_points", "stage", "n", "p_below_peers"]].itertuples(index=False)
    ]
    return chosen.assign(suggestion=text)
