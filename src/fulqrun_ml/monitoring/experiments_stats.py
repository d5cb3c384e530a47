"""Always-valid sequential inference for a difference of two Bernoulli rates (mSPRT), plus the fixed-horizon
z-test it is compared with.

Why write it ourselves: nothing in our pinned stack implements the mixture SPRT for two-sample binary
metrics (scipy and statsmodels offer fixed-horizon tests only; ../shared/DEPENDENCIES.md lists no sequential
testing library), and the formula is a few lines, checked in the tests against a hand computation.
The test follows Johari, Pekelis & Walsh, "Always valid inference: continuous monitoring of A/B tests"
(Operations Research 2022), as used by Optimizely's stats engine: the difference of means
theta_hat = p_b - p_a is treated as Gaussian with variance v = p_a(1 - p_a)/n_a + p_b(1 - p_b)/n_b, and the
likelihood ratio of "theta ~ N(theta0, tau^2)" against "theta = theta0" is

    Lambda = sqrt(v / (v + tau^2)) * exp(tau^2 (theta_hat - theta0)^2 / (2 v (v + tau^2))).

Lambda is (asymptotically) a martingale under the null, so by Ville's inequality P(sup_n Lambda_n >= 1/alpha)
<= alpha: the p-value min(1, min_{m <= n} 1/Lambda_m) stays valid however often anyone looks, and
{theta : Lambda_n(theta) < 1/alpha}, intersected over looks, is a confidence sequence. The naive alternative,
a fixed-horizon z-test re-run at every look, is calibrated for one look only; its false-positive rate grows
with every peek (measured in reports/bench_ab.json).

Every function is vectorised over any leading shape (runs x looks), so 1,000 simulated experiments with 50
looks each are a handful of numpy operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def bernoulli_variance(successes: np.ndarray, n: np.ndarray) -> np.ndarray:
    """p_hat (1 - p_hat) with p_hat kept within [1/(2n), 1 - 1/(2n)], so an arm with no (or only) successes
    still has a positive variance instead of making Lambda infinite after a handful of observations."""
    n = np.asarray(n, dtype=float)
    safe_n = np.maximum(n, 1.0)
    p = np.clip(np.asarray(successes, dtype=float) / safe_n, 0.5 / safe_n, 1.0 - 0.5 / safe_n)
    return p * (1.0 - p)


def difference_and_variance(
    n_a: np.ndarray, s_a: np.ndarray, n_b: np.ndarray, s_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """theta_hat = rate_b - rate_a and its unpooled variance (arms with n = 0 count as one observation)."""
    n_a, n_b = np.maximum(np.asarray(n_a, float), 1.0), np.maximum(np.asarray(n_b, float), 1.0)
    diff = np.asarray(s_b, float) / n_b - np.asarray(s_a, float) / n_a
    variance = bernoulli_variance(s_a, n_a) / n_a + bernoulli_variance(s_b, n_b) / n_b
    return diff, variance


def msprt_log_lambda(diff: np.ndarray, variance: np.ndarray, tau: float, theta0: float = 0.0) -> np.ndarray:
    """log of the normal-mixture likelihood ratio (module docstring), in logs so huge ratios do not overflow."""
    tau2 = float(tau) ** 2
    v = np.asarray(variance, dtype=float)
    return 0.5 * np.log(v / (v + tau2)) + tau2 * (np.asarray(diff, float) - theta0) ** 2 / (2.0 * v * (v + tau2))


def msprt_half_width(variance: np.ndarray, tau: float, alpha: float) -> np.ndarray:
    """Half-width of {theta : Lambda(theta) < 1/alpha}, solved from the formula for Lambda:
    |theta_hat - theta| < sqrt(2 v (v + tau^2) / tau^2 * (log(1/alpha) + 0.5 log((v + tau^2) / v)))."""
    tau2 = float(tau) ** 2
    v = np.asarray(variance, dtype=float)
    return np.sqrt(2.0 * v * (v + tau2) / tau2 * (np.log(1.0 / alpha) + 0.5 * np.log((v + tau2) / v)))


@dataclass(frozen=True)
class SequentialPath:
    """The always-valid statistics at each look (last axis = looks). Before an arm has `min_per_arm`
    observations nothing is concluded: the p-value is 1 and the interval is [-1, 1]."""

    diff: np.ndarray
    p_value: np.ndarray  # running min of 1/Lambda, capped at 1
    ci_low: np.ndarray  # running max of the per-look lower bounds (intersection of the intervals)
    ci_high: np.ndarray  # running min of the per-look upper bounds
    rejected: np.ndarray  # p_value < alpha (equivalently, 0 outside the intersected interval)


def msprt_path(
    n_a: np.ndarray,
    s_a: np.ndarray,
    n_b: np.ndarray,
    s_b: np.ndarray,
    *,
    tau: float,
    alpha: float,
    min_per_arm: int = 0,
) -> SequentialPath:
    """Cumulative counts per look (last axis ordered in time) -> the always-valid p-value and interval."""
    diff, variance = difference_and_variance(n_a, s_a, n_b, s_b)
    ready = (np.asarray(n_a) >= max(min_per_arm, 1)) & (np.asarray(n_b) >= max(min_per_arm, 1))
    log_lambda = np.where(ready, msprt_log_lambda(diff, variance, tau), -np.inf)
    p_value = np.minimum(1.0, np.exp(-np.maximum.accumulate(log_lambda, axis=-1)))
    half = msprt_half_width(variance, tau, alpha)
    low = np.maximum.accumulate(np.where(ready, diff - half, -1.0), axis=-1)
    high = np.minimum.accumulate(np.where(ready, diff + half, 1.0), axis=-1)
    return SequentialPath(diff=diff, p_value=p_value, ci_low=low, ci_high=high, rejected=p_value < alpha)


def z_test(n_a: np.ndarray, s_a: np.ndarray, n_b: np.ndarray, s_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The textbook fixed-horizon two-proportion z-test (pooled variance under H0): (z, two-sided p-value).
    Valid only if it is computed once, at a sample size fixed in advance."""
    n_a, n_b = np.maximum(np.asarray(n_a, float), 1.0), np.maximum(np.asarray(n_b, float), 1.0)
    s_a, s_b = np.asarray(s_a, float), np.asarray(s_b, float)
    pooled = (s_a + s_b) / (n_a + n_b)
    se = np.sqrt(np.maximum(pooled * (1.0 - pooled), 1e-12) * (1.0 / n_a + 1.0 / n_b))
    z = (s_b / n_b - s_a / n_a) / se
    return z, 2.0 * stats.norm.sf(np.abs(z))


def first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, or -1 where there is none (the stopping look)."""
    mask = np.asarray(mask, dtype=bool)
    return np.where(mask.any(axis=-1), mask.argmax(axis=-1), -1)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for a rate k/n (what a false-positive rate from n simulated runs is)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def fixed_horizon_n_per_arm(base_rate: float, effect: float, alpha: float, power: float) -> int:
    """Per-arm sample size of a one-look two-sided z-test with the given power at `effect` (for context: what
    the sequential test pays for the right to look at any time)."""
    p_b = min(max(base_rate + effect, 1e-6), 1 - 1e-6)
    variance = base_rate * (1 - base_rate) + p_b * (1 - p_b)
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return int(np.ceil((z_a + z_b) ** 2 * variance / effect**2))
