"""Coverage analysis: white space (high-potential accounts and segments with little or no touch) and
territories whose open pipeline cannot reach quota at the forecast win rates, ranked with numbers.

**White space** (accounts, then industry x size x region segments):
- touches = activities traced to the account (estimates.account_touches) in the last `touch_days`;
- the touch benchmark is the median touches of the high-potential accounts (potential at or above the
  `min_potential_quantile` of the book): what a well-covered good account gets;
- touch_gap = max(0, 1 - touches / benchmark) in [0, 1] (1 = untouched);
- potential at stake = potential x touch_gap ($ per year of expected revenue left unworked);
- an account is white space when it is high-potential and its touch gap is positive; accounts and segments are
  ranked by potential at stake.

**Quota risk** per territory (the accounts' current rep):
- open pipeline = the open deals on the territory's accounts;
- forecast win rate of a deal = its probability from a served deal-win model's predictions when given
  (`opportunity_id, probability`, e.g. `fulqrun-ml score` output), else the shrunk segment win rate
  (estimates.segment_win_rates) shifted on the log-odds scale by its stage: P(win | a closed deal reached
  that stage) - the overall rate, so a deal in negotiation counts for more than one in prospecting;
- bookings = sum of value x Bernoulli(win) (a Poisson-binomial sum). With segment rates, each Monte Carlo
  draw first draws every segment's rate from its beta posterior (shared by the segment's deals, so the
  uncertainty in the rates widens the interval); with model predictions the probabilities are taken as given;
- quota = the config's `quota`, else a `quota` column of the reps table, else an equal share of the
  organisation's expected bookings x `quota_share` (so the ranking says which territories fall below par);
- reported: expected bookings with a central `interval`, quota gap = quota - expected bookings (with the
  interval), P(reach quota); territories are ranked by P(reach quota), lowest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import CLOSED_STAGES, OPEN_STAGES
from fulqrun_ml.optimize.estimates import _logit, account_touches, closed_deals
from fulqrun_ml.optimize.problem import OptimizeError


@dataclass(frozen=True)
class CoverageConfig:
    """White-space and quota settings (configs/optimize/coverage.yaml)."""

    touch_days: int = 90
    min_potential_quantile: float = 0.5
    quota: float | None = None
    quota_share: float = 1.0
    draws: int = 4000
    interval: float = 0.9
    seed: int = 0
    top_k: int = 25
    progress: bool = False

    def __post_init__(self) -> None:
        checks = {
            "touch_days": (self.touch_days >= 1, "must be at least 1"),
            "min_potential_quantile": (0 <= self.min_potential_quantile <= 1, "must lie in [0, 1]"),
            "quota": (self.quota is None or self.quota > 0, "must be positive or null"),
            "quota_share": (self.quota_share > 0, "must be positive"),
            "draws": (self.draws >= 100, "must be at least 100"),
            "interval": (0 < self.interval < 1, "must lie in (0, 1)"),
            "top_k": (self.top_k >= 1, "must be at least 1"),
        }
        for name, (ok, reason) in checks.items():
            if not ok:
                raise OptimizeError(name, f"{reason}, got {getattr(self, name)}")


def white_space(accounts: pd.DataFrame, tables: CRMTables, cfg: CoverageConfig) -> pd.DataFrame:
    """Every account with touches, touch gap, potential at stake, `white_space` and its rank (rules above)."""
    touches = account_touches(tables)
    recent = touches[touches["created_at"] >= tables.extracted_at - pd.Timedelta(days=cfg.touch_days)]
    count = recent["company_id"].value_counts().reindex(accounts["company_id"], fill_value=0).to_numpy()
    potential = accounts["potential"].to_numpy(dtype=float)
    high = potential >= np.quantile(potential, cfg.min_potential_quantile)
    benchmark = max(float(np.median(count[high])), 1.0)
    gap = np.clip(1.0 - count / benchmark, 0.0, 1.0)
    keep = [c for c in ("company_id", "current_rep", "industry", "size", "region", "latitude", "longitude")
            if c in accounts]  # fmt: skip
    table = accounts[keep].assign(potential=potential, touches=count, touch_benchmark=benchmark, touch_gap=gap,
                                  potential_at_stake=potential * gap, high_potential=high,
                                  white_space=high & (gap > 0))  # fmt: skip
    order = np.lexsort((table["company_id"].astype(str), -table["potential_at_stake"].to_numpy()))
    table["rank"] = np.empty(len(table), dtype=int)
    table.iloc[order, table.columns.get_loc("rank")] = np.arange(1, len(table) + 1)
    return table.sort_values("rank").reset_index(drop=True)


def white_space_segments(table: pd.DataFrame) -> pd.DataFrame:
    """Industry x size x region: accounts, potential, potential at stake, touches per account, untouched share."""
    keys = [c for c in ("industry", "size", "region") if c in table]
    if not keys:
        raise OptimizeError("industry", "segments need industry, size or region columns on the accounts")
    grouped = table.groupby(keys, observed=True).agg(
        accounts=("company_id", "size"),
        potential=("potential", "sum"),
        potential_at_stake=("potential_at_stake", "sum"),
        touches_per_account=("touches", "mean"),
        untouched_share=("touch_gap", lambda g: float((g >= 1.0).mean())),
    )
    grouped["at_stake_share"] = grouped["potential_at_stake"] / grouped["potential"].where(grouped["potential"] > 0)
    return grouped.sort_values("potential_at_stake", ascending=False).reset_index()


def read_predictions(path: Path) -> pd.Series:
    """opportunity_id -> probability from a served deal-win model's scores (Parquet or CSV), checked by field."""
    if not path.is_file():
        raise OptimizeError("predictions", f"file {path} does not exist")
    table = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    key = "opportunity_id" if "opportunity_id" in table else "id"
    for column in (key, "probability"):
        if column not in table:
            raise OptimizeError(
                column, f"the predictions file {path} needs columns opportunity_id (or id), probability"
            )
    p = pd.to_numeric(table["probability"], errors="coerce").to_numpy(dtype=float)
    if not (np.isfinite(p) & (p >= 0) & (p <= 1)).all():
        raise OptimizeError("probability", f"the predictions file {path} has probabilities outside [0, 1] or missing")
    if table[key].duplicated().any():
        raise OptimizeError(key, f"the predictions file {path} has more than one row per opportunity")
    return pd.Series(p, index=table[key].astype(str))


def stage_shift(tables: CRMTables, deals: pd.DataFrame) -> pd.Series:
    """Open stage -> log-odds shift of P(win | a closed deal reached the stage) over the overall win rate."""
    history = tables.stage_history
    reached = history[history["to_stage"].isin(OPEN_STAGES)]
    depth = reached["to_stage"].map({s: i for i, s in enumerate(OPEN_STAGES)}).groupby(reached["opportunity_id"]).max()
    won = deals.set_index("opportunity_id")["won"].astype(bool)
    depth = depth.reindex(won.index).fillna(0).to_numpy()
    overall = float(won.mean()) if len(won) else 0.5
    shifts = {}
    for i, stage in enumerate(OPEN_STAGES):
        at = depth >= i
        rate = (won.to_numpy()[at].sum() + 1.0) / (at.sum() + 2.0)  # Laplace: a stage no closed deal reached
        shifts[stage] = float(_logit(rate) - _logit(overall))
    return pd.Series(shifts)


def open_pipeline(accounts: pd.DataFrame, tables: CRMTables, deals: pd.DataFrame | None = None) -> pd.DataFrame:
    """The open deals on the accounts, with their territory, segment, stage shift and value."""
    deals = closed_deals(tables) if deals is None else deals
    opps = tables.opportunities
    open_deals = opps[~opps["stage"].isin(CLOSED_STAGES)]
    owner = accounts.set_index("company_id")
    value = pd.to_numeric(open_deals["value"], errors="coerce").fillna(0.0).to_numpy()
    frame = pd.DataFrame(
        {
            "opportunity_id": open_deals["id"].astype(str).to_numpy(),
            "company_id": open_deals["company_id"].to_numpy(),
            "stage": open_deals["stage"].to_numpy(),
            "value": value,
        }
    )
    frame = frame[frame["company_id"].isin(owner.index)].reset_index(drop=True)
    companies = tables.companies.set_index("id")
    frame["territory"] = owner["current_rep"].reindex(frame["company_id"]).to_numpy()
    frame["industry"] = companies["industry"].reindex(frame["company_id"]).to_numpy()
    frame["size"] = companies["size"].reindex(frame["company_id"]).to_numpy()
    frame["shift"] = stage_shift(tables, deals).reindex(frame["stage"]).fillna(0.0).to_numpy()
    return frame
