"""Potential, workload and rep x segment revenue estimated from CRM history, with empirical-Bayes shrinkage.

One definition each, so territories and assignment read the same numbers:
- **potential** of an account = expected revenue per year = (shrunk deals per year of the account) x (shrunk
  win rate of its industry x size segment) x (mean value of won deals). Rates are shrunk because most
  accounts have one or two deals: a gamma-Poisson prior for deal counts, a beta-binomial one for win rates,
  both with their strength fitted by the method of moments on the CRM itself.
- **workload** = hours of rep effort per year on the account: its touches in the last `window_days`
  (activities on the account, its contacts, deals and leads) x minutes per touch type, per year.
- **visits** = meetings per year on the account (what travel cost is charged on).
- **rep x industry win effect** (`SkillModel`): each rep's win rate per industry shrunk towards what the rep's
  overall rate and the industry's rate predict, so a rep with 5 deals in an industry moves little from the
  prior and one with 60 moves a lot. Expected revenue of rep r on account a = potential of a with the
  segment's win odds shifted by the rep's effect in a's industry.
This is the shrunk-history definition (the default, `potential.source: estimates`). The alternative from the
platform's trained deal-win, expansion and churn models is `model_potential.py` (`potential.source: models`); it
falls back to the quantities here, term by term, where a model is not registered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables

DEFAULT_ACTIVITY_MINUTES = {"call": 15.0, "email": 5.0, "meeting": 60.0, "task": 10.0, "note": 5.0}
YEAR_DAYS = 365.25


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def shrink_rates(wins: np.ndarray, n: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, float]:
    """Beta-binomial posterior means (wins + k p0) / (n + k); k from the between-cell variance left over
    after binomial noise (method of moments), so shrinkage is as strong as the data say it should be."""
    wins, n, prior = (np.asarray(x, dtype=float) for x in (wins, n, prior))
    seen = n > 0
    if seen.sum() < 2:
        return prior.copy(), np.inf
    # E[sum n (y - p0)^2] = tau^2 sum n + sum p0 (1 - p0): weighting by n keeps tiny cells from drowning tau^2.
    residual = wins[seen] / n[seen] - prior[seen]
    noise = float(np.sum(prior[seen] * (1 - prior[seen])))
    between = max((float(np.sum(n[seen] * residual**2)) - noise) / float(n[seen].sum()), 1e-5)
    k = float(np.clip(np.mean(prior[seen] * (1 - prior[seen])) / between - 1.0, 1.0, 1e4))
    return (wins + k * prior) / (n + k), k


def shrink_counts(counts: np.ndarray, exposure_years: float) -> np.ndarray:
    """Gamma-Poisson posterior mean rate per year of each account's event count over `exposure_years`."""
    counts = np.asarray(counts, dtype=float)
    mean = counts.mean()
    if mean <= 0:
        return np.zeros_like(counts)
    between = max(counts.var() - mean, 1e-9) / exposure_years**2  # variance of the true rates
    rate = mean / exposure_years
    alpha = rate**2 / between
    return (counts + alpha) / (exposure_years + alpha / rate)


def closed_deals(tables: CRMTables) -> pd.DataFrame:
    """opportunity_id, company_id, rep_id, value, won, closed_at of every closed deal (the learning history)."""
    opps = tables.opportunities
    closed = opps[opps["stage"].isin(["closed_won", "closed_lost"])]
    return pd.DataFrame(
        {
            "opportunity_id": closed["id"].to_numpy(),
            "company_id": closed["company_id"].to_numpy(),
            "rep_id": closed["assigned_to"].to_numpy(),
            "value": closed["value"].to_numpy(dtype=float),
            "won": (closed["stage"] == "closed_won").to_numpy(),
            "closed_at": closed["close_date"].to_numpy(),
        }
    )


def _touch_company(tables: CRMTables) -> pd.Series:
    """The company each activity is about (NaN where it cannot be traced: a lead without a company)."""
    acts = tables.activities
    lookups = {
        "opportunity": tables.opportunities.set_index("id")["company_id"],
        "contact": tables.contacts.set_index("id")["company_id"],
        "lead": tables.leads.set_index("id")["company_id"],
    }
    company = pd.Series(np.where(acts["related_type"] == "company", acts["related_id"], None), index=acts.index)
    for kind, lookup in lookups.items():
        mask = acts["related_type"] == kind
        company[mask] = lookup.reindex(acts.loc[mask, "related_id"]).to_numpy()
    return company


def segment_win_rates(deals: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Per industry x size segment: wins, deals, the overall rate as prior, the shrunk rate and the prior
    strength k (one column, the same for every row): a Beta(wins + k prior, deals - wins + k (1 - prior))
    posterior per segment, which coverage draws from for its quota intervals."""
    segment = pd.MultiIndex.from_frame(companies[["industry", "size"]])
    deal_segment = companies.set_index("id")[["industry", "size"]].reindex(deals["company_id"])
    overall = float(deals["won"].mean()) if len(deals) else 0.0
    grouped = deals["won"].groupby(pd.MultiIndex.from_frame(deal_segment.reset_index(drop=True))).agg(["sum", "count"])
    grouped = grouped.reindex(segment.unique(), fill_value=0)
    rates, k = shrink_rates(grouped["sum"].to_numpy(), grouped["count"].to_numpy(), np.full(len(grouped), overall))
    return pd.DataFrame(
        {"wins": grouped["sum"].to_numpy(), "deals": grouped["count"].to_numpy(), "prior": overall, "rate": rates,
         "strength": k},
        index=grouped.index,
    )  # fmt: skip


def account_touches(tables: CRMTables) -> pd.DataFrame:
    """company_id, type, created_at of every activity traceable to an account (routes read the last meeting,
    coverage the touches in a window; one tracing rule with the workload estimate)."""
    company = _touch_company(tables)
    acts = tables.activities
    keep = company.notna().to_numpy()
    return pd.DataFrame(
        {
            "company_id": company[keep].reset_index(drop=True),
            "type": acts.loc[keep, "type"].reset_index(drop=True),
            "created_at": acts.loc[keep, "created_at"].reset_index(drop=True),
        }
    )


def account_estimates(
    tables: CRMTables,
    deals: pd.DataFrame | None = None,
    window_days: int = 365,
    activity_minutes: dict[str, float] | None = None,
) -> pd.DataFrame:
    """company_id, industry, size, deals_per_year, segment_win_rate, potential, workload, visits per account.

    `deals` overrides the closed-deal history (the simulator's skill-aware outcomes); default: the CRM's own."""
    minutes = activity_minutes or DEFAULT_ACTIVITY_MINUTES
    deals = closed_deals(tables) if deals is None else deals
    companies = tables.companies.reset_index(drop=True)
    ids = companies["id"]
    opps = tables.opportunities
    first = pd.Timestamp(opps["created_at"].min()) if len(opps) else tables.extracted_at
    years = max((tables.extracted_at - first).days / YEAR_DAYS, 1 / YEAR_DAYS)
    created = opps["company_id"].value_counts().reindex(ids, fill_value=0).to_numpy()
    deals_per_year = shrink_counts(created, years)

    segment = pd.MultiIndex.from_frame(companies[["industry", "size"]])
    segment_rate = segment_win_rates(deals, companies)["rate"].reindex(segment).to_numpy()
    won_value = float(deals.loc[deals["won"], "value"].mean()) if deals["won"].any() else 0.0

    acts = tables.activities
    since = tables.extracted_at - pd.Timedelta(days=window_days)
    recent = acts["created_at"] >= since
    company = _touch_company(tables)[recent]
    kinds = acts.loc[recent, "type"]
    effort = kinds.map(minutes).fillna(0.0) / 60.0
    per_year = YEAR_DAYS / window_days
    workload = effort.groupby(company).sum().reindex(ids, fill_value=0.0).to_numpy() * per_year
    visits = (kinds == "meeting").groupby(company).sum().reindex(ids, fill_value=0).to_numpy() * per_year
    return pd.DataFrame(
        {
            "company_id": ids.to_numpy(),
            "industry": companies["industry"].to_numpy(),
            "size": companies["size"].to_numpy(),
            "deals_per_year": deals_per_year,
            "segment_win_rate": segment_rate,
            "potential": deals_per_year * segment_rate * won_value,
            "workload": workload,
            "visits": visits.astype(float),
        }
    )


@dataclass(frozen=True)
class SkillModel:
    """Shrunk rep x industry win-log-odds effects relative to the industry (fitted by `fit_skill_model`)."""

    effect: pd.DataFrame  # rep_id x industry
    strength: float  # the beta-binomial prior strength k (pseudo-deals) the data gave
    won_value: float

    def revenue(self, rep_ids: pd.Series | np.ndarray, accounts: pd.DataFrame) -> np.ndarray:
        """[reps x accounts] expected revenue per year: the account's rate and segment odds shifted by the
        rep's effect in its industry (0 for a rep or industry without history)."""
        effect = self.effect.reindex(index=pd.Index(rep_ids), columns=pd.unique(accounts["industry"])).fillna(0.0)
        columns = pd.Index(effect.columns).get_indexer(accounts["industry"])
        logit = _logit(accounts["segment_win_rate"].to_numpy())[None, :] + effect.to_numpy()[:, columns]
        return accounts["deals_per_year"].to_numpy()[None, :] * self.won_value * _sigmoid(logit)


def fit_skill_model(deals: pd.DataFrame, companies: pd.DataFrame) -> SkillModel:
    """Shrink rep rates towards the overall rate, then rep x industry rates towards rep x industry priors."""
    industry = companies.set_index("id")["industry"].reindex(deals["company_id"]).to_numpy()
    won = deals["won"].to_numpy(dtype=float)
    overall = float(won.mean())
    by_industry = pd.Series(won).groupby(industry).agg(["sum", "count"])
    ind_rate, _ = shrink_rates(by_industry["sum"], by_industry["count"], np.full(len(by_industry), overall))
    ind_logit = pd.Series(_logit(ind_rate), index=by_industry.index)
    by_rep = pd.Series(won).groupby(deals["rep_id"].to_numpy()).agg(["sum", "count"])
    rep_rate, _ = shrink_rates(by_rep["sum"], by_rep["count"], np.full(len(by_rep), overall))
    rep_shift = pd.Series(_logit(rep_rate) - _logit(overall), index=by_rep.index)
    cells = pd.Series(won).groupby([deals["rep_id"].to_numpy(), industry]).agg(["sum", "count"])
    cells = cells.reindex(pd.MultiIndex.from_product([by_rep.index, by_industry.index]), fill_value=0)
    reps, inds = cells.index.get_level_values(0), cells.index.get_level_values(1)
    base = ind_logit.reindex(inds).to_numpy()
    prior = _sigmoid(base + rep_shift.reindex(reps).to_numpy())
    rate, k = shrink_rates(cells["sum"].to_numpy(), cells["count"].to_numpy(), prior)
    effect = pd.Series(_logit(rate) - base, index=cells.index).unstack()
    won_value = float(deals.loc[deals["won"].astype(bool), "value"].mean()) if won.any() else 0.0
    return SkillModel(effect=effect, strength=k, won_value=won_value)
