"""The error-rate proof on the CRM simulator, at unit-test size: continuous peeking keeps the always-valid
test's A/A false-positive rate within alpha (plus binomial noise) while the naive peeking z-test inflates
past it, and a real effect is found in the right direction. reports/bench_ab.json is the full-size run."""

import json

import numpy as np
import pytest
import yaml

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.monitoring.experiments import main
from fulqrun_ml.monitoring.experiments_config import ExperimentError, experiment_from_dict
from fulqrun_ml.monitoring.experiments_sim import (
    QUALITY_COEFFICIENT,
    deal_pool,
    quality_uplift_for_effect,
    simulate_validity,
    treated_probability,
)

ALPHA = 0.05
RUNS = 200
# One-sided binomial margin around alpha: 2 standard errors of a rate measured from RUNS runs.
MARGIN = 2 * np.sqrt(ALPHA * (1 - ALPHA) / RUNS)

SMALL = {
    "name": "unit_sim",
    "salt": "t",
    "variants": [{"name": "control", "weight": 1}, {"name": "treatment", "weight": 1}],
    "metric": {"type": "binary"},
    "minimum_detectable_effect": 0.10,
    "alpha": ALPHA,
    "max_samples": 2_000,
    "min_samples_per_arm": 50,
    "simulation": {"batch_size": 100, "seed": 5},
}


@pytest.fixture(scope="module")
def pool():
    return deal_pool(4_000, seed=5)


@pytest.fixture(scope="module")
def result(pool):
    return simulate_validity(experiment_from_dict(SMALL), aa_runs=RUNS, ab_runs=RUNS, pool=pool)


def test_the_quality_coefficient_is_the_simulators():
    """The treatment moves latent quality z, so its effect on the logit is the simulator's coefficient of z."""
    latent = simulate_crm(n_opportunities=4_000, seed=3).latent
    p = latent["true_win_probability"].to_numpy()
    slope = np.polyfit(latent["latent_quality"].to_numpy(), np.log(p / (1 - p)), 1)[0]
    assert slope == pytest.approx(QUALITY_COEFFICIENT, abs=0.05)


def test_the_uplift_produces_exactly_the_requested_effect(pool):
    p = pool.win_probability
    assert np.allclose(treated_probability(p, 0.0), p)
    for effect in (0.05, -0.03, 0.1):
        dz = quality_uplift_for_effect(p, effect)
        assert np.sign(dz) == np.sign(effect)
        assert np.mean(treated_probability(p, dz)) - np.mean(p) == pytest.approx(effect, abs=1e-9)
    with pytest.raises(ExperimentError, match="minimum_detectable_effect"):
        quality_uplift_for_effect(p, 0.9)


def test_aa_false_positive_rate_stays_within_alpha_under_continuous_peeking(result):
    aa = result["aa"]
    assert result["design"]["looks"] == 20 and aa["msprt"]["rejected"]["runs"] == RUNS
    assert result["aa_false_positive_rate"] <= ALPHA + MARGIN
    low, high = result["aa_false_positive_rate_clopper_pearson_95"]
    assert low <= result["aa_false_positive_rate"] <= high


def test_naive_peeking_inflates_past_the_same_bound(result):
    naive = result["aa"]["naive_peeking_z_test"]["rejected"]["rate"]
    assert naive > ALPHA + MARGIN
    assert naive > 2 * result["aa_false_positive_rate"]
    # The z-test itself is calibrated when looked at once: peeking, not the test, is the problem.
    assert result["aa"]["fixed_horizon_z_test_at_max_samples"]["rejected"]["rate"] <= ALPHA + MARGIN


def test_a_real_effect_is_found_in_the_right_direction_and_covered(result):
    assert result["treatment"]["true_effect_absolute"] == pytest.approx(0.10, abs=1e-9)
    ab = result["ab"]["msprt"]
    assert result["power"] >= 0.8
    assert ab["rejected"]["count"] == ab["rejected_right_direction"]["count"]
    assert ab["stopping_n_if_rejected"]["median"] < SMALL["max_samples"]
    assert ab["ci_coverage_at_stop"]["rate"] >= 1 - ALPHA - MARGIN


def test_simulate_needs_two_variants_and_enough_deals(pool):
    three = {**SMALL, "variants": [{"name": n, "weight": 1} for n in "abc"]}
    with pytest.raises(ExperimentError, match="'variants'"):
        simulate_validity(experiment_from_dict(three), 1, 1, pool=pool)
    with pytest.raises(ExperimentError, match="pool_opportunities"):
        simulate_validity(experiment_from_dict({**SMALL, "max_samples": 10_000}), 1, 1, pool=pool)


def test_cli_simulate_writes_the_summary(tmp_path, capsys):
    path, out = tmp_path / "small.yaml", tmp_path / "sim.json"
    path.write_text(yaml.safe_dump({**SMALL, "simulation": {**SMALL["simulation"], "pool_opportunities": 4_000}}))
    assert main(["simulate", "--config", str(path), "--runs", "20", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == json.loads(capsys.readouterr().out)
    assert written["aa"]["msprt"]["rejected"]["runs"] == 20 and written["config"]["name"] == "unit_sim"
    assert 0.0 <= written["aa_false_positive_rate"] <= 1.0 and written["power"] is not None
