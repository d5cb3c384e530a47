"""Prove an experiment's error rates on the CRM simulator, where the true effect is known.

The population is the simulator's deals (`data/simulator.py`): each has a true win probability
p = sigmoid(logit), with logit linear in the latent deal quality z (coefficient QUALITY_COEFFICIENT = 1.3).
The treatment is a policy that raises every treated deal's latent quality by a known delta_z, so its win
probability becomes sigmoid(logit(p) + 1.3 delta_z); delta_z is solved so that the mean win rate over the
population rises by exactly the experiment's minimum detectable effect. An A/A run gives the treatment
arm delta_z = 0: any rejection is a false positive.

Each run is one experiment as it would happen: a fresh salt (so assignment is re-randomised through the
real `assign_indices`), `max_samples` deals drawn from the population in random arrival order, outcomes
drawn from their true probabilities, and a look after every `batch_size` outcomes. Three analysts watch the
same data:
  msprt        the always-valid test, stopping at its first rejection (what `analyse_outcomes` does);
  naive        a fixed-horizon z-test re-run at every look, stopping at its first p < alpha - the peeking
               habit that sequential testing exists to replace; its false-positive rate inflates;
  fixed        the same z-test once, at max_samples (valid, but only if nobody looked before).
Runs are vectorised over (runs x looks); only the hashing is a Python loop (~1.3 us per id).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from scipy.optimize import brentq

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.monitoring.experiments_config import ExperimentConfig, ExperimentError, assign_indices
from fulqrun_ml.monitoring.experiments_stats import (
    clopper_pearson,
    first_true,
    fixed_horizon_n_per_arm,
    msprt_path,
    z_test,
)

QUALITY_COEFFICIENT = 1.3  # d logit(p_win) / d z in simulate_crm (its docstring, step 3); a test checks it
RUN_CHUNK = 100  # runs simulated at once: bounds memory at ~RUN_CHUNK x max_samples floats


@dataclasses.dataclass(frozen=True)
class DealPool:
    """The simulated deals an experiment draws from: ids and true (untreated) win probabilities."""

    ids: np.ndarray
    win_probability: np.ndarray
    seed: int


def deal_pool(n_opportunities: int, seed: int) -> DealPool:
    """The simulator's deals and their true win probabilities (the latent truth, never a feature)."""
    crm = simulate_crm(
        n_opportunities=n_opportunities,
        n_companies=max(800, n_opportunities // 10),
        n_reps=max(24, n_opportunities // 300),
        seed=seed,
    )
    latent = crm.latent
    return DealPool(
        ids=latent["opportunity_id"].astype(str).to_numpy(),
        win_probability=latent["true_win_probability"].to_numpy(dtype=float),
        seed=seed,
    )


def treated_probability(p: np.ndarray, delta_z: float) -> np.ndarray:
    """Win probability after raising latent quality by delta_z: sigmoid(logit(p) + 1.3 delta_z)."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + QUALITY_COEFFICIENT * delta_z)))


def quality_uplift_for_effect(p: np.ndarray, effect: float) -> float:
    """The delta_z whose mean win-rate change over `p` is exactly `effect` (absolute; monotone in delta_z)."""
    base = float(np.mean(p))
    if not -base < effect < 1 - base:
        raise ExperimentError("minimum_detectable_effect", f"{effect} is impossible from a {base:.3f} base rate")
    if effect == 0:
        return 0.0
    return float(brentq(lambda dz: float(np.mean(treated_probability(p, dz))) - base - effect, -20.0, 20.0))


def _simulate_counts(
    experiment: ExperimentConfig, pool: DealPool, runs: int, delta_z: float, label: str, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Cumulative (n_a, s_a, n_b, s_b) at every look, each of shape (runs, looks)."""
    n_max, batch = experiment.max_samples, int(experiment.simulation.get("batch_size", 200))
    if n_max > len(pool.ids):
        raise ExperimentError("simulation.pool_opportunities", f"needs >= max_samples ({n_max}) deals")
    looks = np.arange(batch, n_max + 1, batch) - 1
    treated = treated_probability(pool.win_probability, delta_z)
    out = [np.empty((runs, len(looks)), dtype=np.int64) for _ in range(4)]
    for start in range(0, runs, RUN_CHUNK):
        stop = min(start + RUN_CHUNK, runs)
        idx = np.stack([rng.choice(len(pool.ids), n_max, replace=False) for _ in range(stop - start)])
        arm = np.stack(
            [
                assign_indices(dataclasses.replace(experiment, salt=f"{experiment.salt}/{label}-{start + i}"), ids)
                for i, ids in enumerate(pool.ids[idx])
            ]
        )
        p = np.where(arm == 1, treated[idx], pool.win_probability[idx])
        won = rng.uniform(size=p.shape) < p
        for k, series in enumerate((arm == 0, (arm == 0) & won, arm == 1, (arm == 1) & won)):
            out[k][start:stop] = np.cumsum(series, axis=1)[:, looks]
    return (*out, looks + 1)


def _rate(hits: np.ndarray) -> dict:
    k, n = int(np.sum(hits)), int(np.size(hits))
    low, high = clopper_pearson(k, n)
    return {"rate": k / n, "count": k, "runs": n, "clopper_pearson_95": [low, high]}


def _analyse(experiment: ExperimentConfig, counts: tuple[np.ndarray, ...], true_effect: float) -> dict:
    """What each analyst concluded in each run, summarised (see the module docstring)."""
    n_a, s_a, n_b, s_b, n_at_look = counts
    alpha = experiment.alpha
    path = msprt_path(n_a, s_a, n_b, s_b, tau=experiment.tau, alpha=alpha, min_per_arm=experiment.min_samples_per_arm)
    _, z_p = z_test(n_a, s_a, n_b, s_b)
    stop = first_true(path.rejected)
    rows = np.arange(len(stop))
    at = np.where(stop >= 0, stop, n_at_look.size - 1)  # the look each run's result is read at
    rejected = stop >= 0
    right_way = rejected & (np.sign(path.diff[rows, at]) == np.sign(true_effect))
    covered = (path.ci_low[rows, at] <= true_effect) & (true_effect <= path.ci_high[rows, at])
    naive = first_true(z_p < alpha)
    stop_n = n_at_look[at]
    return {
        "msprt": {
            "rejected": _rate(rejected),
            "rejected_right_direction": _rate(right_way),
            "ci_coverage_at_stop": _rate(covered),
            "stopping_n_if_rejected": _quantiles(stop_n[rejected]),
            "stopping_n_all_runs": _quantiles(stop_n),
        },
        "naive_peeking_z_test": {
            "rejected": _rate(naive >= 0),
            "stopping_n_if_rejected": _quantiles(n_at_look[naive[naive >= 0]]),
        },
        "fixed_horizon_z_test_at_max_samples": {"rejected": _rate(z_p[:, -1] < alpha)},
        "curves": {
            "n": n_at_look.tolist(),
            "msprt_cumulative_rejection": path.rejected.mean(axis=0).tolist(),
            "naive_cumulative_rejection": np.maximum.accumulate(z_p < alpha, axis=1).mean(axis=0).tolist(),
            "fixed_horizon_rejection_if_stopped_here": (z_p < alpha).mean(axis=0).tolist(),
        },
    }


def _n_for_power(ab: dict, target: float) -> int | None:
    """The smallest look at which the always-valid test had rejected in >= `target` of the A/B runs: what
    max_samples would need to be for the target power (None if even max_samples falls short)."""
    curve = np.asarray(ab["curves"]["msprt_cumulative_rejection"])
    reached = np.flatnonzero(curve >= target)
    return int(ab["curves"]["n"][reached[0]]) if reached.size else None


def _quantiles(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"count": 0}
    q = np.percentile(values, [25, 50, 75])
    return {"count": int(values.size), "p25": float(q[0]), "median": float(q[1]), "p75": float(q[2])}


def simulate_validity(
    experiment: ExperimentConfig,
    aa_runs: int = 200,
    ab_runs: int = 200,
    pool: DealPool | None = None,
    effect: float | None = None,
) -> dict:
    """A/A runs (false-positive rates) and A/B runs at `effect` (default: the MDE; power, stopping time) on
    the simulator. `ab_runs=0` skips the A/B half (power is then None)."""
    if len(experiment.variants) != 2:
        raise ExperimentError("variants", "simulate compares exactly two variants (control, treatment)")
    if aa_runs < 1 or ab_runs < 0:
        raise ExperimentError("runs", f"need at least one A/A run and no negative counts, got {aa_runs}, {ab_runs}")
    sim = experiment.simulation
    seed = int(sim.get("seed", 13))
    started = time.perf_counter()
    pool_seconds = None  # None: the caller simulated the population
    if pool is None:
        pool = deal_pool(int(sim.get("pool_opportunities", 2 * experiment.max_samples)), seed)
        pool_seconds = time.perf_counter() - started
    mde = experiment.minimum_detectable_effect
    delta_z = quality_uplift_for_effect(pool.win_probability, mde if effect is None else effect)
    true_effect = float(np.mean(treated_probability(pool.win_probability, delta_z) - pool.win_probability))
    rng = np.random.default_rng([seed, 2])
    aa = _analyse(experiment, _simulate_counts(experiment, pool, aa_runs, 0.0, "aa", rng), 0.0)
    ab = None
    if ab_runs:
        ab = _analyse(experiment, _simulate_counts(experiment, pool, ab_runs, delta_z, "ab", rng), true_effect)
    base = float(np.mean(pool.win_probability))
    weights = experiment.cumulative_weights
    return {
        "aa_false_positive_rate": aa["msprt"]["rejected"]["rate"],
        "aa_false_positive_rate_clopper_pearson_95": aa["msprt"]["rejected"]["clopper_pearson_95"],
        "power": None if ab is None else ab["msprt"]["rejected_right_direction"]["rate"],
        "power_clopper_pearson_95": None
        if ab is None
        else ab["msprt"]["rejected_right_direction"]["clopper_pearson_95"],
        "median_stopping_n": None if ab is None else ab["msprt"]["stopping_n_all_runs"]["median"],
        "max_samples_for_target_power": None if ab is None else _n_for_power(ab, experiment.power),
        "alpha": experiment.alpha,
        "population": {
            "source": "fulqrun_ml.data.simulator.simulate_crm true_win_probability",
            "opportunities": int(pool.ids.size),
            "seed": pool.seed,
            "mean_true_win_probability": base,
        },
        "treatment": {
            "mechanism": "treated deals' latent quality z raised by delta_z: p -> sigmoid(logit(p) + 1.3 delta_z)",
            "delta_z": delta_z,
            "true_effect_absolute": true_effect,
            "true_effect_relative": true_effect / base,
        },
        "design": {
            "max_samples": experiment.max_samples,
            "batch_size": int(sim.get("batch_size", 200)),
            "looks": len(aa["curves"]["n"]),
            "mixing_sd": experiment.tau,
            "min_samples_per_arm": experiment.min_samples_per_arm,
            "split": [float(w) for w in np.diff(np.concatenate([[0.0], weights]))],
            "fixed_horizon_n_per_arm_for_target_power": fixed_horizon_n_per_arm(
                base, true_effect or mde, experiment.alpha, experiment.power
            ),
            "target_power": experiment.power,
        },
        "aa": aa,
        "ab": ab,
        "seconds": {"population": pool_seconds, "total": time.perf_counter() - started},
    }
