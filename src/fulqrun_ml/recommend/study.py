"""One comparison of the learners on a datamodule's test decisions: the shipped DR network, the T-learner, and the
naive predictive model's sensitivity, each turned into a policy and judged on the simulator's truth.

Shared by `fulqrun-ml train task=nba_uplift` (its holdout metrics) and scripts/bench_recommendations.py (per seed).
"""

from __future__ import annotations

from typing import Any

from fulqrun_ml.recommend.datamodule import UpliftDataModule
from fulqrun_ml.recommend.effect_model import EnsembleUplift, predict_uplift
from fulqrun_ml.recommend.learners import fit_sensitivity, t_learner_effects
from fulqrun_ml.recommend.policy_eval import evaluate_policies

OURS = "dr_learner"


def compare_learners(datamodule: UpliftDataModule, ensemble: EnsembleUplift, seed: int) -> dict[str, Any]:
    """Policy values, effect RMSE, lift fraction of the oracle, OPE and interval coverage on the test split."""
    train, test = datamodule.worlds["train"], datamodule.worlds["test"]
    mean, sd = predict_uplift(ensemble, datamodule.spec, test.states)
    naive = fit_sensitivity(train.states, train.logged_action, train.won, seed)
    effects = {
        OURS: mean,
        "t_learner": t_learner_effects(datamodule.nuisance, test.states),
        "naive_sensitivity": naive.effects(test.states),
    }
    propensities = datamodule.nuisance.propensity(test.states)
    return evaluate_policies(test, effects, propensities, naive, OURS, seed, (mean, sd))
