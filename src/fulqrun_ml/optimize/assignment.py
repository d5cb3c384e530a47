"""Rep-account assignment as a generalised assignment MILP solved by HiGHS (scipy.optimize.milp).

    maximise  sum_ra x_ra (expected revenue_ra - travel_weight x travel cost_ra)
    s.t.      every account has exactly one rep
              sum_a workload_a x_ra <= capacity_r           (hours per year)
              accounts moved from their current rep <= max_moved_share x N   (when set)
              locked accounts keep their current rep

Capacities are in workload hours, not account counts, so this is a generalised assignment problem rather
than a pure transportation problem; its LP relaxation has at most one fractional account per rep, so HiGHS
closes it in a few branch-and-bound nodes. Expected revenue comes from `estimates.SkillModel` (shrunk rep x
industry effects); travel is a round trip per visit at the rep's cost per km. `greedy_assignment` is the simple
baseline every benchmark puts next to the optimiser: accounts by their best score, each to its best rep with
room left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix, vstack

from fulqrun_ml.data.simulator_geo import haversine_km
from fulqrun_ml.optimize.problem import InfeasibleError, OptimizeError, check_accounts, check_capacity, check_reps


@dataclass(frozen=True)
class AssignmentConfig:
    """Objective weights, limits and solver settings (configs/optimize/assignment.yaml)."""

    travel_weight: float = 1.0
    max_moved_share: float | None = None
    time_limit_s: float = 60.0
    mip_rel_gap: float = 5e-3
    progress: bool = False

    def __post_init__(self) -> None:
        if self.travel_weight < 0:
            raise OptimizeError("travel_weight", f"must be >= 0, got {self.travel_weight}")
        if self.max_moved_share is not None and not 0.0 <= self.max_moved_share <= 1.0:
            raise OptimizeError("max_moved_share", f"must lie in [0, 1] or be null, got {self.max_moved_share}")
        if self.time_limit_s <= 0:
            raise OptimizeError("time_limit_s", f"must be positive, got {self.time_limit_s}")


@dataclass
class AssignmentResult:
    """One rep per account, with the solver's record."""

    owner: np.ndarray
    status: str
    mip_gap: float
    solve_seconds: float
    objective: float


def travel_matrix(accounts: pd.DataFrame, reps: pd.DataFrame) -> np.ndarray:
    """[reps x accounts] travel cost per year: visits x round trip km x the rep's cost per km."""
    km = haversine_km(
        reps["home_latitude"].to_numpy()[:, None],
        reps["home_longitude"].to_numpy()[:, None],
        accounts["latitude"].to_numpy()[None, :],
        accounts["longitude"].to_numpy()[None, :],
    )
    return 2 * km * accounts["visits"].to_numpy()[None, :] * reps["travel_cost_per_km"].to_numpy()[:, None]


def _checked(accounts: pd.DataFrame, reps: pd.DataFrame, revenue: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    reps = check_reps(reps)
    accounts = check_accounts(accounts, reps)
    check_capacity(accounts, reps)
    if np.shape(revenue) != (len(reps), len(accounts)):
        raise OptimizeError("revenue", f"expected a [reps x accounts] = {(len(reps), len(accounts))} matrix, "
                            f"got {np.shape(revenue)}")  # fmt: skip
    if not np.isfinite(revenue).all():
        raise OptimizeError("revenue", "contains NaN or infinite values")
    return accounts, reps


def solve_assignment(
    accounts: pd.DataFrame, reps: pd.DataFrame, revenue: np.ndarray, cfg: AssignmentConfig | None = None
) -> AssignmentResult:
    """The revenue-maximising capacity-feasible assignment (raises InfeasibleError naming the constraint)."""
    cfg = cfg or AssignmentConfig()
    accounts, reps = _checked(accounts, reps, revenue)
    n_reps, n_acc = len(reps), len(accounts)
    score = np.asarray(revenue, dtype=float) - cfg.travel_weight * travel_matrix(accounts, reps)
    current = pd.Index(reps["rep_id"]).get_indexer(accounts["current_rep"])
    rep_of = np.repeat(np.arange(n_reps), n_acc)  # variable k = r * n_acc + a
    acc_of = np.tile(np.arange(n_acc), n_reps)
    n_var = n_reps * n_acc
    is_current = rep_of == current[acc_of]
    rows = [
        csr_matrix((np.ones(n_var), (acc_of, np.arange(n_var))), shape=(n_acc, n_var)),
        csr_matrix((accounts["workload"].to_numpy()[acc_of], (rep_of, np.arange(n_var))), shape=(n_reps, n_var)),
    ]
    lower = [np.ones(n_acc), np.full(n_reps, -np.inf)]
    upper = [np.ones(n_acc), reps["capacity_hours"].to_numpy()]
    if cfg.max_moved_share is not None:
        rows.append(csr_matrix((is_current.astype(float), (np.zeros(n_var, int), np.arange(n_var))), shape=(1, n_var)))
        lower.append(np.array([(1 - cfg.max_moved_share) * n_acc - 1e-9]))
        upper.append(np.array([np.inf]))
    lb = (is_current & accounts["locked"].to_numpy()[acc_of]).astype(float)
    scale = max(float(np.abs(score).max()), 1e-9)  # HiGHS's tolerances are absolute: keep costs near 1
    started = time.perf_counter()
    res = milp(
        -score.ravel() / scale,
        integrality=np.ones(n_var),
        bounds=Bounds(lb, np.ones(n_var)),
        constraints=[LinearConstraint(vstack(rows).tocsr(), np.concatenate(lower), np.concatenate(upper))],
        options={"time_limit": cfg.time_limit_s, "mip_rel_gap": cfg.mip_rel_gap, "disp": cfg.progress},
    )
    seconds = time.perf_counter() - started
    if res.x is None:
        if res.status == 2:
            locked_load = accounts.loc[accounts["locked"], "workload"].groupby(accounts["current_rep"]).sum()
            over = locked_load[locked_load > reps.set_index("rep_id")["capacity_hours"].reindex(locked_load.index)]
            binding = ["locked"] if len(over) else ["capacity_hours", "max_moved_share"]
            raise InfeasibleError(binding, (
                f"no assignment fits: locked accounts alone exceed the capacity of rep(s) {list(over.index)[:3]}"
                if len(over) else
                "no assignment fits every rep's capacity_hours (accounts too large to pack) together with "
                f"max_moved_share={cfg.max_moved_share}; add capacity or allow more moves"))  # fmt: skip
        raise InfeasibleError(["time_limit_s"], f"no assignment found within time_limit_s={cfg.time_limit_s}")
    x = res.x.reshape(n_reps, n_acc)
    owner = reps["rep_id"].to_numpy()[x.argmax(axis=0)]
    return AssignmentResult(
        owner=owner,
        status="optimal" if res.status == 0 else f"time limit: best incumbent ({res.message})",
        mip_gap=float(getattr(res, "mip_gap", 0.0) or 0.0),
        solve_seconds=seconds,
        objective=float(score[x.argmax(axis=0), np.arange(n_acc)].sum()),
    )


def greedy_assignment(
    accounts: pd.DataFrame, reps: pd.DataFrame, revenue: np.ndarray, cfg: AssignmentConfig | None = None
) -> np.ndarray:
    """Baseline: accounts by descending best score, each to its best-scoring rep with room left (the rep with
    most room left when none has enough); locked accounts stay. Ignores max_moved_share."""
    cfg = cfg or AssignmentConfig()
    accounts, reps = _checked(accounts, reps, revenue)
    score = np.asarray(revenue, dtype=float) - cfg.travel_weight * travel_matrix(accounts, reps)
    room = reps["capacity_hours"].to_numpy().astype(float).copy()
    current = pd.Index(reps["rep_id"]).get_indexer(accounts["current_rep"])
    workload = accounts["workload"].to_numpy()
    chosen = np.full(len(accounts), -1)
    for a in np.flatnonzero(accounts["locked"].to_numpy()):
        chosen[a] = current[a]
        room[current[a]] -= workload[a]
    for a in np.argsort(-score.max(axis=0), kind="stable"):
        if chosen[a] >= 0:
            continue
        fits = room >= workload[a]
        r = int(np.argmax(np.where(fits, score[:, a], -np.inf))) if fits.any() else int(np.argmax(room))
        chosen[a] = r
        room[r] -= workload[a]
    return reps["rep_id"].to_numpy()[chosen]
