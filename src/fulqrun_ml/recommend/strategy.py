"""Segments (industry x size x region) ranked as market-entry and investment priorities, with bootstrap intervals.

Per segment, from the CRM's closed deals and its accounts:
- **win rate**: a Binomial GLM with industry, size and region main effects (statsmodels), then each segment's
  own record shrunk toward that prediction (beta-binomial, strength by the method of moments). Most of the 72
  segments hold a few dozen deals, so a raw rate ranks noise; the main effects borrow strength across segments
  and the shrinkage keeps a real interaction when the segment's deals support it.
- **cycle**: mean days from creation to close of won deals (the overall mean where a segment has none).
- **value trend**: the yearly growth of deal value (slope of log value on the creation date).
- **headroom**: accounts in the segment without a won deal x win rate x mean deal value: revenue still open.
- **velocity**: win rate x mean deal value / cycle days: revenue per selling day of a deal.
The priority is the headroom; the rank interval (5th-95th percentile of the rank over `n_bootstrap` resamples of
deals) says whether a segment is reliably ahead of another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from fulqrun_ml.errors import FieldValidationError

SEGMENT = ("industry", "size", "region")
METRICS = ("win_rate", "cycle_days", "value_trend", "headroom", "velocity")


@dataclass(frozen=True)
class StrategyConfig:
    """Settings (configs/recommend/strategy.yaml); `region_of_country` maps companies.country to a region."""

    n_bootstrap: int = 100
    seed: int = 0
    region_of_country: dict | None = None
    min_shrink_strength: float = 1.0


def segment_deals(opportunities: pd.DataFrame, companies: pd.DataFrame, region_of_country: dict) -> pd.DataFrame:
    """Closed deals with their account's segment, outcome, value, cycle and creation time (field errors named)."""
    for column in ("industry", "size", "country", "id"):
        if column not in companies.columns:
            raise FieldValidationError(f"companies.{column}", "missing")
    for column in ("company_id", "stage", "value", "created_at", "close_date"):
        if column not in opportunities.columns:
            raise FieldValidationError(f"opportunities.{column}", "missing")
    closed = opportunities[opportunities["stage"].isin(["closed_won", "closed_lost"])]
    if closed.empty:
        raise FieldValidationError("opportunities.stage", "no closed deals to rank segments on")
    company = companies.set_index("id").reindex(closed["company_id"])
    value = pd.to_numeric(closed["value"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(value).any() or (value <= 0).any():
        raise FieldValidationError("opportunities.value", "closed deals need a positive value")
    created = pd.to_datetime(closed["created_at"], utc=True)
    deals = pd.DataFrame(
        {
            "company_id": closed["company_id"].to_numpy(),
            "industry": company["industry"].fillna("unknown").astype(str).to_numpy(),
            "size": company["size"].fillna("unknown").astype(str).to_numpy(),
            "region": company["country"].map(region_of_country).fillna("other").astype(str).to_numpy(),
            "won": (closed["stage"] == "closed_won").to_numpy(),
            "value": value,
            "cycle_days": (pd.to_datetime(closed["close_date"], utc=True) - created).dt.total_seconds().to_numpy()
            / 86400.0,
            "years": ((created - created.min()).dt.total_seconds() / (365.25 * 86400.0)).to_numpy(),
        }
    )
    return deals


def _dummies(frame: pd.DataFrame, levels: dict[str, list[str]]) -> np.ndarray:
    parts = [np.ones((len(frame), 1))]
    for column in SEGMENT:
        values = frame[column].to_numpy()
        parts += [(values == level).astype(float)[:, None] for level in levels[column][1:]]
    return np.concatenate(parts, axis=1)


def _win_rates(deals: pd.DataFrame, segments: pd.DataFrame, levels: dict, min_strength: float) -> np.ndarray:
    """Main-effects GLM prediction per segment, shrunk toward by each segment's own wins (beta-binomial)."""
    fit = sm.GLM(deals["won"].to_numpy(dtype=float), _dummies(deals, levels), family=sm.families.Binomial()).fit()
    prior = np.asarray(fit.predict(_dummies(segments, levels)))
    keys = pd.MultiIndex.from_frame(segments[list(SEGMENT)])
    grouped = deals.groupby(list(SEGMENT))["won"].agg(["sum", "size"]).reindex(keys).fillna(0.0)
    wins, n = grouped["sum"].to_numpy(), grouped["size"].to_numpy()
    seen = n > 0
    residual = wins[seen] / n[seen] - prior[seen]
    noise = float(np.sum(prior[seen] * (1 - prior[seen])))
    between = max((float(np.sum(n[seen] * residual**2)) - noise) / max(float(n[seen].sum()), 1.0), 1e-5)
    strength = float(np.clip(np.mean(prior[seen] * (1 - prior[seen])) / between - 1.0, min_strength, 1e4))
    return (wins + strength * prior) / (n + strength)


def segment_metrics(deals: pd.DataFrame, accounts: pd.DataFrame, segments: pd.DataFrame, levels: dict,
                    config: StrategyConfig) -> pd.DataFrame:  # fmt: skip
    """The five metrics for every segment, from one sample of deals."""
    keys = pd.MultiIndex.from_frame(segments[list(SEGMENT)])
    by = deals.groupby(list(SEGMENT))
    win_rate = _win_rates(deals, segments, levels, config.min_shrink_strength)
    won = deals[deals["won"]]
    cycle = won.groupby(list(SEGMENT))["cycle_days"].mean().reindex(keys).fillna(won["cycle_days"].mean())
    mean_value = by["value"].mean().reindex(keys).fillna(deals["value"].mean()).to_numpy()
    trend = _log_value_slopes(deals).reindex(keys).fillna(0.0).to_numpy()
    open_accounts = accounts.groupby(list(SEGMENT))["never_won"].sum().reindex(keys).fillna(0.0).to_numpy()
    return pd.DataFrame(
        {
            "win_rate": win_rate,
            "cycle_days": cycle.to_numpy(),
            "value_trend": trend,
            "headroom": open_accounts * win_rate * mean_value,
            "velocity": win_rate * mean_value / np.maximum(cycle.to_numpy(), 1.0),
        }
    )


def _log_value_slopes(deals: pd.DataFrame) -> pd.Series:
    """Yearly growth of deal value per segment: exp(OLS slope of log value on years) - 1, from grouped sums
    (vectorised: the bootstrap calls this a hundred times); 0 where a segment has < 3 deals or no time spread."""
    frame = pd.DataFrame({"x": deals["years"], "y": np.log(deals["value"])})
    frame = frame.assign(xx=frame["x"] ** 2, xy=frame["x"] * frame["y"], n=1.0)
    sums = frame.groupby([deals[c] for c in SEGMENT]).sum()
    sxx = sums["xx"] - sums["x"] ** 2 / sums["n"]
    sxy = sums["xy"] - sums["x"] * sums["y"] / sums["n"]
    ok = (sums["n"] >= 3) & (sxx > 1e-6)
    return pd.Series(np.where(ok, np.expm1(sxy / sxx.where(ok, 1.0)), 0.0), index=sums.index)


def rank_segments(deals: pd.DataFrame, companies: pd.DataFrame, config: StrategyConfig) -> pd.DataFrame:
    """Every segment's metrics with 5-95 % bootstrap intervals, ranked by headroom (1 = invest first)."""
    if config.n_bootstrap < 2:
        raise FieldValidationError("n_bootstrap", f"must be at least 2, got {config.n_bootstrap}")
    region_of = config.region_of_country or {}
    accounts = pd.DataFrame(
        {
            "industry": companies["industry"].fillna("unknown").astype(str).to_numpy(),
            "size": companies["size"].fillna("unknown").astype(str).to_numpy(),
            "region": companies["country"].map(region_of).fillna("other").astype(str).to_numpy(),
            "never_won": ~companies["id"].isin(deals.loc[deals["won"], "company_id"]).to_numpy(),
        }
    )
    segments = accounts[list(SEGMENT)].drop_duplicates().sort_values(list(SEGMENT)).reset_index(drop=True)
    levels = {c: sorted(set(segments[c]) | set(deals[c])) for c in SEGMENT}
    point = segment_metrics(deals, accounts, segments, levels, config)
    rng = np.random.default_rng(config.seed)
    draws = [
        segment_metrics(deals.iloc[rng.integers(0, len(deals), len(deals))], accounts, segments, levels, config)
        for _ in range(config.n_bootstrap)
    ]
    table = segments.copy()
    keys = pd.MultiIndex.from_frame(segments)
    table["n_deals"] = deals.groupby(list(SEGMENT)).size().reindex(keys).fillna(0).to_numpy(dtype=int)
    table["raw_win_rate"] = deals.groupby(list(SEGMENT))["won"].mean().reindex(keys).to_numpy(dtype=float)
    for metric in METRICS:
        stacked = np.stack([d[metric].to_numpy() for d in draws])
        table[metric] = point[metric].to_numpy()
        table[f"{metric}_low"] = np.percentile(stacked, 5, axis=0)
        table[f"{metric}_high"] = np.percentile(stacked, 95, axis=0)
    ranks = np.stack([(-d["headroom"].to_numpy()).argsort().argsort() + 1 for d in draws])
    table["priority_rank"] = (-table["headroom"].to_numpy()).argsort().argsort() + 1
    table["priority_rank_low"] = np.percentile(ranks, 5, axis=0)
    table["priority_rank_high"] = np.percentile(ranks, 95, axis=0)
    return table.sort_values("priority_rank").reset_index(drop=True)
