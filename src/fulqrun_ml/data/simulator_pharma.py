"""Pharmaceutical BI simulator: HCPs, territories, products, weekly TRx / NRx, rep calls and samples, seeded.

Why a separate generator (not an option of `simulate_crm`): the pharma tables share no rows with the deal
tables, and keeping them apart leaves every existing simulator output byte-identical. The story (effect sizes
in docs/pharma.md and docs/simulator.md, "Pharma: HCPs, prescriptions, calls and samples"):

  potential_h   = lognormal(log 6, 0.6) * SPECIALTY_LEVEL[specialty_h] * territory_level      (heterogeneity)
  call_rate_h   = CALL_BASE + CALL_TARGETING * pct_h ** 1.5   (pct_h: the HCP's potential percentile: reps
                  target high prescribers, which confounds a naive calls-vs-NRx comparison)
  calls_{h,t}   ~ Poisson(call_rate_h * (1 + QUARTER_PUSH in the last 3 weeks of a quarter))
  samples_{h,t} ~ Poisson(sample_rate_terr * calls_{h,t} + DROP_OFF_RATE)
  adstock       A_t = calls_t + CALL_DECAY * A_{t-1},   S_t = samples_t + SAMPLE_DECAY * S_{t-1}
  mu_{h,t}      = potential_h * (1 + trend_h * years) * season_t * exp(BETA_CALL * A_t + BETA_SAMPLE * S_t)
  NRx_{h,t}     ~ Poisson(mu_{h,t} * Gamma(NRX_SHAPE, 1 / NRX_SHAPE))                (overdispersed)
  TRx_{h,t}     = NRx_{h,t} + Poisson(REFILL_RATE * sum_{k>=1} REFILL_PERSIST**(k-1) NRx_{h,t-k})

The promoted product carries the call and sample effects; the second product (same HCPs, its own potential)
has none: a negative control on which any non-zero estimated "effect" is confounding. The truth returned
alongside: the effect parameters, mu per row (expected NRx) and the expected TRx given past NRx.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fulqrun_ml.data.uuids import seeded_uuids

SPECIALTY_LEVEL = {"cardiology": 1.6, "primary_care": 1.0, "endocrinology": 1.3, "internal_medicine": 0.8}
CALL_BASE = 0.15
CALL_TARGETING = 1.6
QUARTER_PUSH = 0.5
DROP_OFF_RATE = 0.15
NRX_SHAPE = 25.0
REFILL_RATE = 0.55
REFILL_PERSIST = 0.8
SEASON_AMP = 0.15
HOLIDAY_DIP = 0.35
PRODUCTS = ("Cardiozen", "Glucora")  # the first is promoted (calls, samples); the second is the control


@dataclass(frozen=True)
class PharmaEffects:
    """The true effects of calls and samples on the promoted product's NRx (log-lift per unit of adstock)."""

    beta_call: float = 0.06
    call_decay: float = 0.5
    beta_sample: float = 0.015
    sample_decay: float = 0.3

    def cumulative(self, lags: int) -> dict[str, float]:
        """Log-lift on NRx summed over weeks 0..lags after one extra call / sample: the estimand a distributed
        lag of `lags` lags recovers (the tail beyond it is reported separately by `long_run`)."""
        return {
            "call": self.beta_call * sum(self.call_decay**k for k in range(lags + 1)),
            "sample": self.beta_sample * sum(self.sample_decay**k for k in range(lags + 1)),
        }

    def long_run(self) -> dict[str, float]:
        return {"call": self.beta_call / (1 - self.call_decay), "sample": self.beta_sample / (1 - self.sample_decay)}


@dataclass(frozen=True)
class PharmaSimulation:
    """The pharma tables in contract shape (`data.pharma_contract`) and the truth behind them.

    `truth` is aligned row by row with `tables["prescriptions"]`: expected_nrx (mu) and expected_trx
    (E[TRx | past NRx]); `potential` is per HCP id. Rows of `hcp_calls` after `extracted_at` are the plan."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    effects: PharmaEffects
    potential: pd.Series
    extracted_at: pd.Timestamp
    meta: dict[str, object] = field(default_factory=dict)


def _adstock(x: np.ndarray, decay: float) -> np.ndarray:
    """Carry-over along the last axis: a_t = x_t + decay * a_{t-1}."""
    out = np.empty_like(x, dtype=float)
    carry = np.zeros(x.shape[:-1])
    for t in range(x.shape[-1]):
        carry = x[..., t] + decay * carry
        out[..., t] = carry
    return out


def _season(week_start: pd.DatetimeIndex) -> np.ndarray:
    """Winter-high yearly cycle and a dip in the weeks holding Christmas and New Year (offices closed)."""
    doy = week_start.dayofyear.to_numpy()
    season = 1 + SEASON_AMP * np.cos(2 * np.pi * (doy - 15) / 365.25)
    end = week_start + pd.Timedelta(days=6)
    holiday = ((week_start.month == 12) & (end.day >= 25)) | ((end.month == 1) & (end.day <= 7))
    return season * np.where(holiday, 1 - HOLIDAY_DIP, 1.0)


def _quarter_push(week_start: pd.DatetimeIndex) -> np.ndarray:
    """1 in the last three weeks of a calendar quarter: reps push calls before quarter close."""
    naive = week_start.tz_localize(None)
    quarter_end = naive.to_period("Q").end_time.normalize()
    return ((quarter_end - naive).days < 21).astype(float)


def simulate_pharma(
    seed: int = 0,
    n_territories: int = 8,
    hcps_per_territory: int = 25,
    weeks: int = 156,
    future_weeks: int = 4,
    start: str = "2023-01-02",
    effects: PharmaEffects | None = None,
) -> PharmaSimulation:
    """Weekly prescriptions of two products by n_territories x hcps_per_territory HCPs over `weeks` weeks, with
    calls and samples of the promoted product (the last `future_weeks` weeks of calls are the rep plan)."""
    effects = effects or PharmaEffects()
    rng = np.random.default_rng(seed)
    ids = random.Random(seed)
    n_hcp = n_territories * hcps_per_territory
    total = weeks + future_weeks
    week_start = pd.date_range(start, periods=total, freq="W-MON", tz="UTC")
    years = np.arange(total) / 52.0
    created = week_start[0] - pd.Timedelta(days=30)
    org = seeded_uuids(ids, 1)[0]
    terr_ids, hcp_ids, prod_ids = seeded_uuids(ids, n_territories), seeded_uuids(ids, n_hcp), seeded_uuids(ids, 2)

    terr_of = np.repeat(np.arange(n_territories), hcps_per_territory)
    terr_level = rng.lognormal(0.0, 0.2, n_territories)
    specialty = rng.choice(list(SPECIALTY_LEVEL), n_hcp, p=[0.25, 0.4, 0.2, 0.15])
    spec_level = np.array([SPECIALTY_LEVEL[s] for s in specialty])
    potential = rng.lognormal(np.log(6.0), 0.6, n_hcp) * spec_level * terr_level[terr_of]
    control_potential = potential * 0.7 * rng.lognormal(0.0, 0.3, n_hcp)
    trend = rng.uniform(-0.08, 0.12, n_hcp)
    pct = (np.argsort(np.argsort(potential)) + 0.5) / n_hcp
    call_rate = CALL_BASE + CALL_TARGETING * pct**1.5
    sample_rate = rng.uniform(1.0, 3.0, n_territories)[terr_of]
    push = 1 + QUARTER_PUSH * _quarter_push(week_start)
    calls = rng.poisson(call_rate[:, None] * push[None, :])
    samples = rng.poisson(sample_rate[:, None] * calls + DROP_OFF_RATE)
    season = _season(week_start)[None, :]
    level = (1 + trend[:, None] * years[None, :]) * season
    lift = np.exp(
        effects.beta_call * _adstock(calls, effects.call_decay)
        + effects.beta_sample * _adstock(samples, effects.sample_decay)
    )
    frames, truths = [], []
    for p, (pid, base, effect) in enumerate(((prod_ids[0], potential, lift), (prod_ids[1], control_potential, 1.0))):
        mu = base[:, None] * level * effect
        nrx = rng.poisson(mu * rng.gamma(NRX_SHAPE, 1 / NRX_SHAPE, mu.shape))
        refill_mean = REFILL_RATE * (_adstock(nrx, REFILL_PERSIST) - nrx) / REFILL_PERSIST
        trx = nrx + rng.poisson(refill_mean)
        frames.append(
            pd.DataFrame(
                {
                    "hcp_id": np.repeat(hcp_ids, weeks),
                    "product_id": pid,
                    "week": np.tile(week_start[:weeks], n_hcp),
                    "trx": trx[:, :weeks].ravel(),
                    "nrx": nrx[:, :weeks].ravel(),
                }
            )
        )
        truths.append(
            pd.DataFrame(
                {
                    "promoted": p == 0,
                    "expected_nrx": mu[:, :weeks].ravel(),
                    "expected_trx": (mu + refill_mean)[:, :weeks].ravel(),
                }
            )
        )
    calls_table = pd.DataFrame(
        {
            "hcp_id": np.repeat(hcp_ids, total),
            "product_id": prod_ids[0],
            "week": np.tile(week_start, n_hcp),
            "calls": calls.ravel(),
            "samples": samples.ravel(),
        }
    )
    tables = {
        "territories": pd.DataFrame(
            {
                "id": terr_ids,
                "organization_id": org,
                "name": [f"T{i + 1:02d}" for i in range(n_territories)],
                "region": [f"R{i % 3 + 1}" for i in range(n_territories)],
                "created_at": created,
            }
        ),
        "hcps": pd.DataFrame(
            {
                "id": hcp_ids,
                "organization_id": org,
                "territory_id": np.asarray(terr_ids)[terr_of],
                "specialty": specialty,
                "created_at": created,
            }
        ),
        "products": pd.DataFrame(
            {"id": prod_ids, "organization_id": org, "name": list(PRODUCTS), "created_at": created}
        ),
        "prescriptions": pd.concat(frames, ignore_index=True),
        "hcp_calls": calls_table,
    }
    return PharmaSimulation(
        tables=tables,
        truth=pd.concat(truths, ignore_index=True),
        effects=effects,
        potential=pd.Series(potential, index=hcp_ids, name="potential"),
        extracted_at=week_start[weeks - 1] + pd.Timedelta(days=7),
        meta={"seed": seed, "weeks": weeks, "future_weeks": future_weeks, "promoted_product": prod_ids[0]},
    )
