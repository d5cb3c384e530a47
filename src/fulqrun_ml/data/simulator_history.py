"""Slowly changing company and user attributes for the simulator, with their SCD type-2 history.

Why: real CRMs overwrite firmographics and territories in place, so the `companies` / `users` rows of an export
hold today's values. Without changes in the simulated data, a feature reading those rows for a past snapshot
would be right by accident, and no test could tell a point-in-time builder from a leaky one. Here:

- **Firmographic updates** (a data-enrichment refresh): each company gets updates as a Poisson process of
  `UPDATES_PER_YEAR` from its creation. Each multiplies its head count by exp(N(`GROWTH_MEAN`, `GROWTH_SD`))
  and its revenue by the same factor times exp(N(0, `REVENUE_NOISE_SD`)); the size band follows the head
  count across the `SIZE_BANDS` thresholds (the same bands the simulator draws head counts from).
- **Industry reclassification**: a company is reclassified once, to another industry, with probability
  `RECLASSIFY_PROBABILITY`, at a uniform time within `RECLASSIFY_WITHIN_YEARS` of its creation. Country never
  changes (it is tracked all the same).
- **Territory transfers**: a rep moves once to another region with probability `TRANSFER_PROBABILITY`, at a
  uniform time within `TRANSFER_WITHIN_YEARS` of the simulation's start; managers stay.

Only changes before the extraction are in the tables, and the schedule is drawn independently of the extraction
date: a later extract of the same CRM holds the same past changes plus the newer ones.

Effect sizes: none on outcomes. Win odds read the company's *original* industry and size band (the record as
first drawn; `INDUSTRY_EFFECT` / `SIZE_EFFECT` unchanged), rep region never entered the story, so these
changes only move what an honest point-in-time feature sees; a feature reading the current row sees values
from after as_of, which the independent leakage check (`features/recompute_audit.py`) must catch. Draws come
from their own generator (`default_rng([seed, 2])`), so every other table is byte-identical to before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UPDATES_PER_YEAR = 0.8
GROWTH_MEAN, GROWTH_SD = 0.04, 0.15
REVENUE_NOISE_SD = 0.05
RECLASSIFY_PROBABILITY = 0.08
TRANSFER_PROBABILITY = 0.4
# Upper head-count bound (exclusive) of each size band, smallest first; the last band is unbounded.
MAX_UPDATES = 40  # per company: 40 updates at 0.8 a year cover 50 years, far beyond any simulated period
RECLASSIFY_WITHIN_YEARS = 3.0
TRANSFER_WITHIN_YEARS = 2.0
SIZE_BANDS = (("smb", 200), ("mid_market", 2000), ("enterprise", np.inf))
YEAR_DAYS = 365.25


def size_band(employee_count: np.ndarray) -> np.ndarray:
    """The size band a head count falls in (SIZE_BANDS)."""
    bounds = np.array([upper for _, upper in SIZE_BANDS[:-1]])
    names = np.array([name for name, _ in SIZE_BANDS], dtype=object)
    return names[np.searchsorted(bounds, np.asarray(employee_count), side="right")]


def _change_times(begin: pd.Series, years: np.ndarray) -> pd.DatetimeIndex:
    """begin[row] plus `years` (same shape's rows), as timestamps."""
    return pd.DatetimeIndex(begin) + pd.to_timedelta(years * YEAR_DAYS * 86400.0, unit="s")


def simulate_company_history(
    companies: pd.DataFrame, industries: list[str], extracted_at: pd.Timestamp, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(companies with today's values, company_history): the first version of each company is its row as
    drawn, valid from its created_at; later versions follow the updates above, all before `extracted_at`.

    Why a fixed schedule per company (MAX_UPDATES gaps, one reclassification draw) cut at `extracted_at`: the
    draws do not depend on the extraction date, so a later extract of the same CRM holds the same past changes
    plus newer ones, as a real CRM does (a warm start on a newer window sees the history it saw before)."""
    n = len(companies)
    created = companies["created_at"].reset_index(drop=True)
    gaps = rng.exponential(1.0 / UPDATES_PER_YEAR, size=(n, MAX_UPDATES))
    growth_all = np.exp(rng.normal(GROWTH_MEAN, GROWTH_SD, (n, MAX_UPDATES)))
    noise_all = np.exp(rng.normal(0.0, REVENUE_NOISE_SD, (n, MAX_UPDATES)))
    reclass_draw, reclass_years = rng.uniform(size=n), rng.uniform(0, RECLASSIFY_WITHIN_YEARS, n)
    industry_step = rng.integers(1, len(industries), size=n)

    row_of = np.repeat(np.arange(n), MAX_UPDATES)
    at_all = _change_times(created.iloc[row_of].reset_index(drop=True), np.cumsum(gaps, axis=1).ravel())
    keep = np.asarray(at_all < extracted_at)
    updates, update_times = row_of[keep], pd.Series(at_all[keep])
    growth, revenue_noise = growth_all.ravel()[keep], noise_all.ravel()[keep]
    reclass_at = _change_times(created, reclass_years)
    reclassified = np.flatnonzero((reclass_draw < RECLASSIFY_PROBABILITY) & np.asarray(reclass_at < extracted_at))
    position = {name: i for i, name in enumerate(industries)}
    new_industry = [
        industries[(position[companies["industry"].iloc[c]] + industry_step[c]) % len(industries)] for c in reclassified
    ]
    reclass_times = pd.Series(reclass_at[reclassified])

    events = pd.concat(
        [
            pd.DataFrame({"row": np.arange(n), "at": created, "growth": 1.0, "revenue": 1.0, "industry": None}),
            pd.DataFrame(
                {
                    "row": updates,
                    "at": update_times,
                    "growth": growth,
                    "revenue": growth * revenue_noise,
                    "industry": None,
                }
            ),
            pd.DataFrame(
                {
                    "row": reclassified,
                    "at": reclass_times,
                    "growth": 1.0,
                    "revenue": 1.0,
                    "industry": pd.Series(new_industry, dtype=object),
                }
            ),
        ],
        ignore_index=True,
    ).sort_values(["row", "at"], kind="stable", ignore_index=True)
    events.loc[events.groupby("row").head(1).index, "industry"] = companies["industry"].to_numpy()
    events["industry"] = events.groupby("row")["industry"].ffill()
    rows = events["row"].to_numpy()
    employees = np.maximum(
        1,
        np.round(
            companies["employee_count"].to_numpy(dtype=np.float64)[rows] * events.groupby("row")["growth"].cumprod()
        ),
    ).astype(np.int64)
    revenue = np.round(
        companies["annual_revenue"].to_numpy(dtype=np.float64)[rows] * events.groupby("row")["revenue"].cumprod(), 2
    )
    history = pd.DataFrame(
        {
            "company_id": companies["id"].to_numpy()[rows],
            "industry": events["industry"].to_numpy(dtype=object),
            "size": size_band(employees),
            "annual_revenue": revenue.to_numpy(),
            "employee_count": employees,
            "country": companies["country"].to_numpy()[rows],
            "valid_from": pd.to_datetime(events["at"], utc=True).astype("datetime64[us, UTC]"),
        }
    )
    return _current(companies, history, "company_id"), history


def simulate_user_history(
    users: pd.DataFrame,
    regions: tuple[str, ...],
    start: pd.Timestamp,
    extracted_at: pd.Timestamp,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users with today's region, user_history): a rep may transfer once, within TRANSFER_WITHIN_YEARS of
    `start`; only transfers before `extracted_at` are visible (a fixed schedule, as for companies)."""
    n = len(users)
    draw, years = rng.uniform(size=n), rng.uniform(0, TRANSFER_WITHIN_YEARS, n)
    region_step = rng.integers(1, len(regions), size=n)
    begin = pd.Series(pd.Timestamp(start), index=users.index).reset_index(drop=True)
    at = _change_times(begin, years)
    is_rep = (users["role"] == "rep").to_numpy()
    reps = np.flatnonzero(is_rep & (draw < TRANSFER_PROBABILITY) & np.asarray(at < extracted_at))
    moved_at = pd.Series(at[reps])
    position = {name: i for i, name in enumerate(regions)}
    new_region = [regions[(position[users["region"].iloc[u]] + region_step[u]) % len(regions)] for u in reps]
    history = pd.concat(
        [
            pd.DataFrame(
                {
                    "row": np.arange(len(users)),
                    "region": users["region"].to_numpy(),
                    "valid_from": users["created_at"].reset_index(drop=True),
                }
            ),
            pd.DataFrame({"row": reps, "region": pd.Series(new_region, dtype=object), "valid_from": moved_at}),
        ],
        ignore_index=True,
    ).sort_values(["row", "valid_from"], kind="stable", ignore_index=True)
    history = pd.DataFrame(
        {
            "user_id": users["id"].to_numpy()[history["row"].to_numpy()],
            "region": history["region"].to_numpy(dtype=object),
            "valid_from": pd.to_datetime(history["valid_from"], utc=True).astype("datetime64[us, UTC]"),
        }
    )
    return _current(users, history, "user_id"), history


def _current(table: pd.DataFrame, history: pd.DataFrame, key: str) -> pd.DataFrame:
    """`table` with each tracked field set to its newest version: what the CRM row says at extraction."""
    newest = history.drop_duplicates(key, keep="last").set_index(key)
    out = table.copy()
    for column in history.columns.drop([key, "valid_from"]):
        values = pd.Series(newest[column].reindex(table["id"]).to_numpy(), index=table.index)
        out[column] = values.astype(table[column].dtype)
    return out
