"""Which accounts need an in-person visit this week, what each visit is worth, and when it can happen.

Why a module of its own: the routing solver should only see checked, self-consistent stops (a time window
that can hold the visit, a non-negative duration, a value), and the rule for "needs a visit" must be one
documented definition (docs/optimize.md), not something each caller re-derives.

**Needs an in-person touch** (per account, on its current rep's book):
- no meeting in the last `min_days_since_meeting` days (never met counts as infinitely long ago), and
- either an open deal on the account, or potential at or above the `min_potential_quantile` of the whole book.
At most `max_candidates_per_rep` per rep, the most valuable first (a week holds ~30 visits at most).

**Value of a visit**: the recommendation engine's `expected_uplift` when a per-account uplift table is given
(`account_id, expected_uplift`; an account it does not list is worth 0, a negative uplift is worth 0: such a
visit is never worth the travel), else `value_scale` x potential. Dropping a visit costs the solver its value.

**When**: visiting hours per account from `open_hour` / `close_hour` columns when the accounts table has
them (the simulator draws them, a CRM's locations file may carry them), else `visiting_hours` from the
config; duration from a `visit_minutes` column, else the config's `visit_minutes`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import CLOSED_STAGES
from fulqrun_ml.optimize.estimates import account_touches
from fulqrun_ml.optimize.problem import OptimizeError


@dataclass(frozen=True)
class RouteConfig:
    """Week shape, speeds, the candidate rule and OR-Tools settings (configs/optimize/routes.yaml)."""

    days: int = 5
    day_start_hour: float = 7.0
    day_end_hour: float = 19.0
    day_hours: float = 9.0
    speed_kmh: float = 50.0
    road_factor: float = 1.3
    visit_minutes: float = 60.0
    visiting_hours: list[float] = field(default_factory=lambda: [9.0, 17.0])
    min_days_since_meeting: int = 21
    min_potential_quantile: float = 0.5
    max_candidates_per_rep: int = 40
    value_scale: float = 1.0
    first_solution_strategy: str = "PATH_CHEAPEST_ARC"
    metaheuristic: str = "GUIDED_LOCAL_SEARCH"
    time_limit_s: float = 2.0
    progress: bool = False

    def __post_init__(self) -> None:
        checks = {
            "days": (1 <= self.days <= 7, "must lie in 1..7"),
            "day_end_hour": (0 <= self.day_start_hour < self.day_end_hour <= 24, "must follow day_start_hour in 0..24"),
            "day_hours": (self.day_hours > 0, "must be positive"),
            "speed_kmh": (self.speed_kmh > 0, "must be positive"),
            "road_factor": (self.road_factor >= 1.0, "must be >= 1 (road km per great-circle km)"),
            "visit_minutes": (self.visit_minutes >= 0, "must be >= 0 (a negative duration)"),
            "visiting_hours": (
                len(self.visiting_hours) == 2 and self.visiting_hours[0] < self.visiting_hours[1],
                "must be [open_hour, close_hour] with open before close",
            ),
            "min_potential_quantile": (0 <= self.min_potential_quantile <= 1, "must lie in [0, 1]"),
            "max_candidates_per_rep": (self.max_candidates_per_rep >= 1, "must be at least 1"),
            "value_scale": (self.value_scale >= 0, "must be >= 0"),
            "time_limit_s": (self.time_limit_s > 0, "must be positive"),
        }
        for name, (ok, reason) in checks.items():
            if not ok:
                raise OptimizeError(name, f"{reason}, got {getattr(self, name)}")
        routing_enums_pb2 = ortools_module("routing_enums_pb2")
        strategies = routing_enums_pb2.FirstSolutionStrategy.Value.keys()
        if self.first_solution_strategy not in strategies:
            raise OptimizeError("first_solution_strategy", f"unknown {self.first_solution_strategy!r}; one of "
                                f"{sorted(strategies)}")  # fmt: skip
        heuristics = routing_enums_pb2.LocalSearchMetaheuristic.Value.keys()
        if self.metaheuristic not in heuristics:
            raise OptimizeError("metaheuristic", f"unknown {self.metaheuristic!r}; one of {sorted(heuristics)}")


def ortools_module(name: str) -> Any:
    """`ortools.constraint_solver.<name>`, imported when routing runs: OR-Tools is the optional `optimize` extra
    (scripts/bootstrap installs it), so territories, assignment and coverage work without it."""
    try:
        return importlib.import_module(f"ortools.constraint_solver.{name}")
    except ImportError as exc:
        raise OptimizeError("ortools", "routes need OR-Tools: pip install 'fulqrun-ml[optimize]' "
                            "(ortools==9.10.4067)") from exc  # fmt: skip


def read_uplift(path: Path) -> pd.Series:
    """account_id -> expected_uplift from the recommendation engine's Parquet (or CSV), checked by field."""
    if not path.is_file():
        raise OptimizeError("uplift", f"file {path} does not exist")
    table = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    for column in ("account_id", "expected_uplift"):
        if column not in table.columns:
            raise OptimizeError(column, f"the uplift file {path} needs columns account_id, expected_uplift")
    if table["account_id"].isna().any() or table["account_id"].duplicated().any():
        raise OptimizeError("account_id", f"the uplift file {path} needs one row per account (missing or duplicated)")
    uplift = pd.to_numeric(table["expected_uplift"], errors="coerce")
    if not np.isfinite(uplift.to_numpy(dtype=float)).all():
        raise OptimizeError("expected_uplift", f"the uplift file {path} has missing or non-numeric values")
    return pd.Series(uplift.to_numpy(dtype=float), index=table["account_id"].astype(str))


def _hours(accounts: pd.DataFrame, cfg: RouteConfig) -> pd.DataFrame:
    """open_s, close_s, service_s per account (seconds since midnight / seconds), checked by field."""
    n = len(accounts)
    defaults = {"open_hour": cfg.visiting_hours[0], "close_hour": cfg.visiting_hours[1],
                "visit_minutes": cfg.visit_minutes}  # fmt: skip
    frame = pd.DataFrame(
        {c: pd.to_numeric(accounts[c], errors="coerce") if c in accounts else d for c, d in defaults.items()},
        index=accounts.index,
    )
    ids = accounts["company_id"].astype(str)
    for column in frame.columns:
        bad = ~np.isfinite(frame[column].to_numpy(dtype=float))
        if bad.any():
            raise OptimizeError(column, f"{int(bad.sum())} accounts have no usable value (e.g. {ids[bad].iloc[0]})")
    rules = [
        ("visit_minutes", frame["visit_minutes"] < 0, "a negative visit duration"),
        ("open_hour", (frame["open_hour"] < 0) | (frame["close_hour"] > 24), "visiting hours outside 0..24"),
        ("close_hour", frame["close_hour"] - frame["open_hour"] < frame["visit_minutes"] / 60.0,
         "a time window that closes before it opens or is shorter than the visit (impossible time window)"),
    ]  # fmt: skip
    for column, bad, what in rules:
        bad = bad.to_numpy()
        if bad.any():
            raise OptimizeError(column, f"{int(bad.sum())} of {n} accounts have {what} (e.g. company_id "
                                f"{ids[bad].iloc[0]})")  # fmt: skip
    return pd.DataFrame(
        {
            "open_s": np.round(frame["open_hour"].to_numpy() * 3600).astype(np.int64),
            "close_s": np.round(frame["close_hour"].to_numpy() * 3600).astype(np.int64),
            "service_s": np.round(frame["visit_minutes"].to_numpy() * 60).astype(np.int64),
        },
        index=accounts.index,
    )


def visit_candidates(
    accounts: pd.DataFrame, tables: CRMTables, cfg: RouteConfig, uplift: pd.Series | None = None
) -> pd.DataFrame:
    """The checked accounts (problem.check_accounts) that need a visit, with value and timing (rule above)."""
    accounts = accounts.reset_index(drop=True)
    timing = _hours(accounts, cfg)
    touches = account_touches(tables)
    meetings = touches[touches["type"] == "meeting"]
    last_meeting = meetings.groupby("company_id")["created_at"].max()
    since = (tables.extracted_at - last_meeting.reindex(accounts["company_id"])).dt.days.to_numpy(dtype=float)
    since = np.where(np.isnan(since), np.inf, since)
    opps = tables.opportunities
    open_deals = opps[~opps["stage"].isin(CLOSED_STAGES)]["company_id"].value_counts()
    n_open = open_deals.reindex(accounts["company_id"], fill_value=0).to_numpy()
    threshold = float(np.quantile(accounts["potential"], cfg.min_potential_quantile))
    needed = (since >= cfg.min_days_since_meeting) & ((n_open > 0) | (accounts["potential"].to_numpy() >= threshold))
    if uplift is not None:
        value = np.clip(accounts["company_id"].astype(str).map(uplift).fillna(0.0).to_numpy(dtype=float), 0.0, None)
        source = "expected_uplift"
    else:
        value = cfg.value_scale * accounts["potential"].to_numpy(dtype=float)
        source = "potential"
    frame = accounts[["company_id", "current_rep", "latitude", "longitude", "potential"]].assign(
        days_since_meeting=since, open_deals=n_open, value=value, value_source=source, **timing
    )
    frame = frame[needed].sort_values(["current_rep", "value"], ascending=[True, False], kind="stable")
    return frame.groupby("current_rep", sort=False).head(cfg.max_candidates_per_rep).reset_index(drop=True)
