"""Coaching: the simulator's rep x stage skill truth, recovery of known effects through a confounded deal mix,
shrinkage of small reps toward peers, suggestions with revenue at stake, and bad input named by field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_coaching import simulate_coaching
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.recommend.coaching import CoachingConfig, fit_stage_effects, stage_rows
from fulqrun_ml.recommend.coaching_eval import evaluate_coaching
from fulqrun_ml.recommend.coaching_suggestions import skill_gaps, suggestions

CONFIG = CoachingConfig()


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=3000, n_reps=16, n_companies=400, seed=4)


@pytest.fixture(scope="module")
def world(crm):
    return simulate_coaching(crm, seed=4)


def test_simulator_leaves_the_crm_untouched_and_tilts_books_by_skill(crm, world) -> None:
    before = pd.util.hash_pandas_object(crm.tables.opportunities.astype(str)).sum()
    again = simulate_coaching(crm, seed=4)
    assert pd.util.hash_pandas_object(crm.tables.opportunities.astype(str)).sum() == before
    pd.testing.assert_frame_equal(world.deals, again.deals)
    enterprise = world.deals.groupby("rep_id")["size"].apply(lambda s: (s == "enterprise").mean())
    skill = world.skill_effect.mean(axis=1).reindex(enterprise.index)
    assert stats.spearmanr(enterprise, skill).statistic > 0.3  # strong reps get the hard deals
    closed = world.deals[world.deals["closed"]]
    assert set(closed["stage_reached"]) <= set(range(len(OPEN_STAGES) + 1))
    assert (closed["won"] == (closed["stage_reached"] == len(OPEN_STAGES))).all()


def test_stage_rows_expand_each_path() -> None:
    deals = pd.DataFrame(
        {
            "rep_id": ["a", "a"],
            "industry": "software",
            "size": "smb",
            "value": 1e4,
            "meddpicc_score": 50.0,
            "closed": True,
            "stage_reached": [1, 4],
            "won": [False, True],
        }
    )
    rows = stage_rows(deals)
    assert rows["stage_index"].tolist() == [0, 1, 0, 1, 2, 3]
    assert rows["converted"].tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_adjusted_shrunk_effects_track_the_true_skills_better_than_raw_rates(world) -> None:
    result = evaluate_coaching(world, CONFIG)
    assert result["adjusted_shrunk"]["spearman_mean_over_stages"] > 0.5
    assert result["adjusted_shrunk"]["spearman_mean_over_stages"] > result["raw_win_rate"]["spearman_mean_over_stages"]
    assert 0.03 < result["tau2_fitted"] < 0.6  # true tau^2 = 0.4^2 = 0.16
    cells = fit_stage_effects(world.deals, CONFIG).cells
    negotiation = cells[cells["stage"] == "negotiation"]
    truth = world.skill_effect.loc[negotiation["rep_id"], "negotiation"].to_numpy()
    direct = stats.spearmanr(negotiation["effect"], truth).statistic
    assert result["adjusted_shrunk"]["per_stage"]["negotiation"] == pytest.approx(direct)  # labels match stages
    assert list(result["adjusted_shrunk"]["per_stage"]) == list(OPEN_STAGES)


def _synthetic(n_big: int, n_small: int, seed: int = 0) -> pd.DataFrame:
    """Peers with no skill gap, one big rep and one small rep who both lose every deal in negotiation."""
    rng = np.random.default_rng(seed)
    frames = []
    for rep, n in [(f"peer{i}", 150) for i in range(8)] + [("big", n_big), ("small", n_small)]:
        converts = rng.uniform(size=(n, 4)) < 0.8
        if rep in ("big", "small"):
            converts[:, 3] = rng.uniform(size=n) < 0.2
        reached = np.where(converts.all(axis=1), 4, np.argmin(converts, axis=1))
        frames.append(
            pd.DataFrame(
                {
                    "rep_id": rep,
                    "industry": rng.choice(["software", "retail"], n),
                    "size": rng.choice(["smb", "enterprise"], n),
                    "value": 40_000.0,
                    "meddpicc_score": rng.uniform(0, 100, n),
                    "closed": True,
                    "stage_reached": reached,
                    "won": reached == 4,
                    "current_stage": "closed_lost",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_small_reps_are_shrunk_toward_peers() -> None:
    cells = fit_stage_effects(_synthetic(n_big=200, n_small=6), CONFIG).cells.set_index(["rep_id", "stage"])
    big, small = cells.loc[("big", "negotiation")], cells.loc[("small", "negotiation")]
    assert big["effect"] < -1.0  # a known large gap is recovered
    assert small["effect"] > big["effect"]  # same true gap, far fewer deals: pulled toward the peers (0)
    assert abs(small["effect"]) < abs(small["unshrunk_effect"])
    assert small["effect_sd"] > big["effect_sd"]
    peers = cells.loc[[(f"peer{i}", "negotiation") for i in range(8)], "effect"]
    assert peers.abs().max() < 0.5


def test_suggestions_are_confident_material_and_carry_revenue_at_stake(world) -> None:
    gaps = skill_gaps(fit_stage_effects(world.deals, CONFIG), world.deals, CONFIG)
    advice = suggestions(gaps, CONFIG)
    assert len(advice) > 0
    assert (advice["p_below_peers"] >= CONFIG.min_confidence).all()
    assert (advice["gap_points"] <= -CONFIG.min_gap_points).all()
    assert (advice["revenue_at_stake"] >= 0).all() and advice["revenue_at_stake"].is_monotonic_decreasing
    assert advice["suggestion"].str.contains("below peers").all()
    # revenue at stake exists only where the rep has open deals in that stage
    open_cells = set(map(tuple, world.deals.loc[~world.deals["closed"], ["rep_id", "current_stage"]].to_numpy()))
    staked = gaps[gaps["revenue_at_stake"] != 0]
    assert all((r, s) in open_cells for r, s in staked[["rep_id", "stage"]].itertuples(index=False))


def test_bad_input_names_the_field(world) -> None:
    with pytest.raises(FieldValidationError, match=r"field 'rep_id'"):
        fit_stage_effects(world.deals.drop(columns=["rep_id"]), CONFIG)
    with pytest.raises(FieldValidationError, match=r"field 'stage_reached'"):
        fit_stage_effects(world.deals.assign(stage_reached=9), CONFIG)
    with pytest.raises(FieldValidationError, match=r"field 'value'"):
        fit_stage_effects(world.deals.assign(value=0.0), CONFIG)
    with pytest.raises(FieldValidationError, match=r"field 'closed'"):
        fit_stage_effects(world.deals.assign(closed=False), CONFIG)
