"""Discounts with a true, heterogeneous price elasticity on top of a simulated CRM (pricing recommendations).

Why a separate module: `simulate_crm`'s tables and latent truth are pinned by fingerprints and data hashes, and
the contract has no discount column. Pricing needs both a logged discount and the counterfactual win probability
at *any* discount, so this module draws them *from* a simulated CRM with its own generator
(`default_rng([seed, 5])`) and never changes the CRM (the geography module's pattern, `simulator_geo.py`):

1. **Deal context.** `competitor_present` ~ Bernoulli(0.4) (a competitor is in the deal: -0.3 on the win
   log-odds) and `discount_stage` (where price is negotiated: proposal 40 %, negotiation 60 %).
2. **True elasticity, diminishing returns.** The win log-odds at discount d is
   `logit p0 + beta * (1 - exp(-d / DISCOUNT_SCALE))` with `p0` the deal's probability at list price
   (`simulate_crm`'s true probability, plus the competitor shift) and
   `beta = BASE_ELASTICITY x industry x size x stage x competition` multipliers (`*_ELASTICITY`): monotone in
   d, concave, saturating at `beta` (63 % of it reached at d = 0.07).
3. **The historical policy is confounded.** Reps discount more on deals they see slipping: the logged
   discount is `0.06 + 0.035 x slip + 0.03 x competitor + rep style + N(0, 0.03)`, clipped to [0, 0.30] and
   rounded to 0.5 %, where `slip = (50 - meddpicc_score) / 30`. The MEDDPICC score is drawn from the deal's
   latent quality z (`simulate_crm` step 8), so discounted deals are worse deals: a naive win-rate-vs-discount
   curve understates the elasticity. The score is in the data, so adjusting for it blocks that back door
   (the identifying assumption: reps see nothing else about z; stated in docs/simulator.md).
4. **Outcomes under the logged discount.** Every closed deal is re-drawn with a monotone coupling to its
   original draw: `won' = u < p(d_hist)` with u ~ U(0, p) for a deal that was won and U(p, 1) for one that was
   lost (p = the original true probability), exactly as `simulator_geo` re-draws with rep skill. Only
   `deals.won` carries it; the CRM's stage columns keep the original draw.

`true_win_probability(world, discount)` answers the counterfactual for every deal at any discount, and
`true_expected_revenue` is `value x (1 - d) x p(d)`: evaluation reads them, nothing a model fits does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator import SimulatedCRM

BASE_ELASTICITY = 1.0
DISCOUNT_SCALE = 0.07
MAX_HISTORICAL_DISCOUNT = 0.30
COMPETITOR_SHARE = 0.4
COMPETITOR_LOGIT = -0.3
INDUSTRY_ELASTICITY = {
    "software": 0.7,
    "financial_services": 0.9,
    "healthcare": 1.0,
    "manufacturing": 1.3,
    "retail": 1.6,
    "education": 1.2,
}
SIZE_ELASTICITY = {"smb": 1.3, "mid_market": 1.0, "enterprise": 0.7}
STAGE_ELASTICITY = {"proposal": 0.8, "negotiation": 1.25}
COMPETITION_ELASTICITY = {True: 1.5, False: 0.8}
STAGE_SHARE = {"proposal": 0.4, "negotiation": 0.6}


@dataclass(frozen=True)
class PricingWorld:
    """Per deal: what the data shows (`deals`) and the truth only evaluation reads (`base_logit`, `elasticity`)."""

    # opportunity_id, company_id, rep_id, industry, size, value, meddpicc_score, competitor_present,
    # discount_stage, discount, created_at, closed (bool), won (under the logged discount; None when open)
    deals: pd.DataFrame
    base_logit: np.ndarray  # win log-odds at list price (truth)
    elasticity: np.ndarray  # beta: the log-odds gain as the discount grows without bound (truth)


def elasticity_of(industry: np.ndarray, size: np.ndarray, stage: np.ndarray, competitor: np.ndarray) -> np.ndarray:
    """The true beta per deal: the product of its segment multipliers (the heterogeneity the model must learn)."""
    return (
        BASE_ELASTICITY
        * pd.Series(industry).map(INDUSTRY_ELASTICITY).to_numpy(dtype=float)
        * pd.Series(size).map(SIZE_ELASTICITY).to_numpy(dtype=float)
        * pd.Series(stage).map(STAGE_ELASTICITY).to_numpy(dtype=float)
        * np.where(np.asarray(competitor, dtype=bool), COMPETITION_ELASTICITY[True], COMPETITION_ELASTICITY[False])
    )


def discount_lift(discount: np.ndarray | float, elasticity: np.ndarray) -> np.ndarray:
    """beta (1 - exp(-d / scale)): the true log-odds gain of discount d (monotone, diminishing returns)."""
    return np.asarray(elasticity, dtype=float) * (1.0 - np.exp(-np.asarray(discount, dtype=float) / DISCOUNT_SCALE))


def true_win_probability(
    world: PricingWorld, discount: np.ndarray | float, rows: np.ndarray | None = None
) -> np.ndarray:
    """Counterfactual P(win) of each deal (or `rows`) at `discount` (a scalar, one per deal, or [deals x grid])."""
    rows = np.arange(len(world.deals)) if rows is None else np.asarray(rows)
    base, beta = world.base_logit[rows], world.elasticity[rows]
    d = np.asarray(discount, dtype=float)
    if d.ndim == 2:
        base, beta = base[:, None], beta[:, None]
    return 1.0 / (1.0 + np.exp(-(base + discount_lift(d, beta))))


def true_expected_revenue(
    world: PricingWorld, discount: np.ndarray | float, rows: np.ndarray | None = None
) -> np.ndarray:
    """value x (1 - d) x p(d): the quantity a price recommendation maximises, under the truth."""
    rows = np.arange(len(world.deals)) if rows is None else np.asarray(rows)
    d = np.asarray(discount, dtype=float)
    value = world.deals["value"].to_numpy(dtype=float)[rows]
    value = value[:, None] if d.ndim == 2 else value
    return value * (1.0 - d) * true_win_probability(world, d, rows)


def simulate_pricing(crm: SimulatedCRM, seed: int = 0) -> PricingWorld:
    """Draw discounts, elasticities and outcomes under the logged discount (deterministic per seed)."""
    rng = np.random.default_rng([seed, 5])
    tables = crm.tables
    opps = tables.opportunities.reset_index(drop=True)
    n = len(opps)
    latent = crm.latent.set_index("opportunity_id").reindex(opps["id"])
    company = tables.companies.set_index("id").reindex(opps["company_id"])
    competitor = rng.uniform(size=n) < COMPETITOR_SHARE
    stage = rng.choice(list(STAGE_SHARE), size=n, p=list(STAGE_SHARE.values()))
    reps = pd.Index(pd.unique(opps["assigned_to"]))
    rep_style = rng.normal(0.0, 0.02, size=len(reps))[reps.get_indexer(opps["assigned_to"])]
    score = opps["meddpicc_score"].to_numpy(dtype=float)
    slip = (50.0 - score) / 30.0
    raw = 0.06 + 0.035 * slip + 0.03 * competitor + rep_style + rng.normal(0.0, 0.03, size=n)
    discount = np.round(np.clip(raw, 0.0, MAX_HISTORICAL_DISCOUNT) * 200.0) / 200.0

    p_orig = latent["true_win_probability"].to_numpy(dtype=float)
    base_logit = np.log(p_orig / (1.0 - p_orig)) + COMPETITOR_LOGIT * competitor
    beta = elasticity_of(company["industry"].to_numpy(), company["size"].to_numpy(), stage, competitor)
    p_logged = 1.0 / (1.0 + np.exp(-(base_logit + discount_lift(discount, beta))))
    closed = opps["stage"].isin(["closed_won", "closed_lost"]).to_numpy()
    won_orig = latent["won"].to_numpy(dtype=bool)
    u = np.where(won_orig, rng.uniform(size=n) * p_orig, p_orig + rng.uniform(size=n) * (1.0 - p_orig))
    won = pd.array(np.where(closed, u < p_logged, False), dtype="boolean")
    won[~closed] = pd.NA
    deals = pd.DataFrame(
        {
            "opportunity_id": opps["id"].to_numpy(),
            "company_id": opps["company_id"].to_numpy(),
            "rep_id": opps["assigned_to"].to_numpy(),
            "industry": company["industry"].to_numpy(),
            "size": company["size"].to_numpy(),
            "value": opps["value"].to_numpy(dtype=float),
            "meddpicc_score": score,
            "competitor_present": competitor,
            "discount_stage": stage,
            "discount": discount,
            "created_at": opps["created_at"].to_numpy(),
            "closed": closed,
            "won": won,
        }
    )
    return PricingWorld(deals=deals, base_logit=base_logit, elasticity=beta)
