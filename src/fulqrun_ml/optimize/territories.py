"""Territory design as a mixed-integer program solved by HiGHS (scipy.optimize.milp): balance, compactness,
bounded disruption and locked accounts.

The decision: which rep (territory) owns each *unit*. Units are single accounts for small books; above
`aggregate_above` accounts they are the accounts of one grid cell with one current owner (locked accounts stay
single), which keeps the disruption count exact (moving a unit moves exactly its accounts) while 50,000
accounts become a few thousand units. The summary says when it aggregated.

    minimise  w_b mean_t |P_t / P - 1| + w_w mean_t |W_t / W - 1| + w_c travel-weighted km / current km
              + w_m share moved
    s.t.      every unit has one owner among its candidates (its current rep, its k nearest reps, and for
              every rep its nearest units, so no territory is starved of candidates)
              |P_t / P - 1| <= balance_tolerance         (potential within the tolerance of the mean)
              W_t <= max(capacity_t, W_t today)          (within capacity; an overloaded rep no worse than today)
              accounts moved <= max_moved_share x N      (disruption)
              locked accounts keep their current rep

The capacity rule lets a rep who is over capacity today stay there (not above): with a disruption cap, forcing
every overloaded book under capacity at once can be infeasible; the report gives over-capacity hours before
and after. Contiguity is a constraint only with `contiguity: true` (optimize/contiguity.py: each owned unit needs an
owned grid-cell neighbour closer to the rep's home, so every territory is one 8-connected piece); off by default,
because today's books are rarely contiguous and a move cap then leaves no feasible plan. The report measures the
share of contiguous territories before and after either way.
A time limit returns HiGHS's best incumbent with its MIP gap; when no plan exists, `InfeasibleError` names the
constraint families whose removal makes the linear relaxation feasible.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix, vstack

from fulqrun_ml.data.simulator_geo import haversine_km
from fulqrun_ml.optimize.contiguity import contiguity_rows
from fulqrun_ml.optimize.metrics import plan_metrics
from fulqrun_ml.optimize.problem import InfeasibleError, OptimizeError, check_accounts, check_capacity, check_reps

log = logging.getLogger(__name__)
FAMILIES = ("balance_tolerance", "capacity_hours", "max_moved_share", "locked", "contiguity")


@dataclass(frozen=True)
class TerritoryConfig:
    """Objective weights, tolerances and solver limits (configs/optimize/territories.yaml)."""

    balance_tolerance: float | None = None
    max_moved_share: float = 0.2
    candidates: int = 10
    weight_balance: float = 1.0
    weight_workload: float = 0.25
    weight_compactness: float = 0.01
    weight_moved: float = 0.01
    aggregate_above: int = 2000
    contiguity: bool = False
    time_limit_s: float = 60.0
    mip_rel_gap: float = 0.01
    progress: bool = False

    def __post_init__(self) -> None:
        if self.balance_tolerance is not None and self.balance_tolerance <= 0:
            raise OptimizeError("balance_tolerance", f"must be positive or null, got {self.balance_tolerance}")
        if not 0.0 <= self.max_moved_share <= 1.0:
            raise OptimizeError("max_moved_share", f"must lie in [0, 1], got {self.max_moved_share}")
        if self.candidates < 1:
            raise OptimizeError("candidates", f"must be at least 1, got {self.candidates}")
        if self.time_limit_s <= 0:
            raise OptimizeError("time_limit_s", f"must be positive, got {self.time_limit_s}")


@dataclass
class TerritoryResult:
    """The plan (one owner per account) with its solver record and the before/after metrics."""

    owner: np.ndarray
    status: str
    mip_gap: float
    solve_seconds: float
    units: int
    aggregated: bool
    variables: int
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        cv0, cv1 = self.before["potential_cv"], self.after["potential_cv"]
        return {
            "status": self.status,
            "mip_gap": self.mip_gap,
            "solve_seconds": round(self.solve_seconds, 3),
            "units": self.units,
            "aggregated_to_grid_cells": self.aggregated,
            "binary_variables": self.variables,
            "cv_reduction": (cv0 - cv1) / cv0 if cv0 > 0 else 0.0,
            "moved_fraction": self.after["moved_fraction"],
            "before": self.before,
            "after": self.after,
        }


def _units(accounts: pd.DataFrame, aggregate: bool) -> pd.Series:
    """Unit id per account: the account itself, or (grid cell, current rep) with locked accounts alone."""
    if not aggregate:
        return pd.Series(np.arange(len(accounts)), index=accounts.index)
    key = accounts["grid_cell"] + "|" + accounts["current_rep"].astype(str)
    key = key.where(~accounts["locked"], "locked|" + accounts["company_id"].astype(str))
    return pd.Series(pd.factorize(key)[0], index=accounts.index)


def _candidate_edges(dist: np.ndarray, current: np.ndarray, locked: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """(unit, rep) pairs the model may use: current rep, k nearest reps, each rep's nearest units."""
    n_units, n_reps = dist.shape
    k = min(k, n_reps)
    near = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < n_reps else np.tile(np.arange(n_reps), (n_units, 1))
    per_rep = min(n_units, max(3, int(np.ceil(3 * n_units / n_reps))))
    closest = np.argpartition(dist, per_rep - 1, axis=0)[:per_rep, :]
    units = np.concatenate([np.arange(n_units), np.repeat(np.arange(n_units), k), closest.ravel()])
    reps = np.concatenate([current, near.ravel(), np.tile(np.arange(n_reps), per_rep)])
    keep = ~locked[units] | (reps == current[units])
    pairs = np.unique(np.stack([units[keep], reps[keep]], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _model(
    unit: pd.DataFrame,
    km: np.ndarray,
    reps: pd.DataFrame,
    cfg: TerritoryConfig,
    u: np.ndarray,
    r: np.ndarray,
    drop: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, list[LinearConstraint], Bounds, np.ndarray]:
    """c, constraints, bounds, integrality over x (edges) then d+, d- (potential) and e+, e- (workload)."""
    n_units, n_reps, n_edges = len(unit), len(reps), len(u)
    p_mean = unit["potential"].sum() / n_reps
    w_mean = unit["workload"].sum() / n_reps
    pot, work, count = (unit[c].to_numpy()[u] for c in ("potential", "workload", "n"))
    is_current = unit["current"].to_numpy()[u] == r
    baseline = max(
        float((unit["workload"].to_numpy() * km[np.arange(n_units), unit["current"].to_numpy()]).sum()), 1e-9
    )
    total = unit["n"].sum()
    c = np.concatenate([
        cfg.weight_compactness * work * km[u, r] / baseline - cfg.weight_moved * count * is_current / total,
        np.full(2 * n_reps, cfg.weight_balance / n_reps),
        np.full(2 * n_reps, cfg.weight_workload / n_reps),
    ])  # fmt: skip
    # One variable fixed at 1 with cost 1: HiGHS's relative gap is then a gap against 1 + objective. The objective
    # is a mean relative deviation that tends to 0 on a balanced plan, where a pure relative gap never closes.
    c = np.concatenate([c, [1.0]])
    n_var = n_edges + 4 * n_reps + 1
    edges = np.arange(n_edges)
    eye = np.arange(n_reps)
    rows = [csr_matrix((np.ones(n_edges), (u, edges)), shape=(n_units, n_var))]
    lower, upper = [np.ones(n_units)], [np.ones(n_units)]

    def balance(values: np.ndarray, mean: float, offset: int) -> csr_matrix:
        data = np.concatenate([values / max(mean, 1e-12), -np.ones(n_reps), np.ones(n_reps)])
        cols = np.concatenate([edges, n_edges + offset + eye, n_edges + offset + n_reps + eye])
        return csr_matrix((data, (np.concatenate([r, eye, eye]), cols)), shape=(n_reps, n_var))

    rows += [balance(pot, p_mean, 0), balance(work, w_mean, 2 * n_reps)]
    lower += [np.ones(n_reps), np.ones(n_reps)]
    upper += [np.ones(n_reps), np.ones(n_reps)]
    if "capacity_hours" not in drop:
        rows.append(csr_matrix((work, (r, edges)), shape=(n_reps, n_var)))
        lower.append(np.full(n_reps, -np.inf))
        today = np.bincount(unit["current"].to_numpy(), unit["workload"].to_numpy(), minlength=n_reps)
        upper.append(np.maximum(reps["capacity_hours"].to_numpy(), today))
    if "max_moved_share" not in drop:
        rows.append(csr_matrix((count * is_current, (np.zeros(n_edges, int), edges)), shape=(1, n_var)))
        lower.append(np.array([(1.0 - cfg.max_moved_share) * total - 1e-9]))
        upper.append(np.array([np.inf]))
    if cfg.contiguity and "contiguity" not in drop:
        rows.append(contiguity_rows(unit["cell"], km, u, r, n_var))
        lower.append(np.full(n_edges, -np.inf))
        upper.append(np.zeros(n_edges))
    constraint = LinearConstraint(vstack(rows).tocsr(), np.concatenate(lower), np.concatenate(upper))
    ub = np.full(n_var, np.inf)
    ub[:n_edges] = 1.0
    tol = cfg.balance_tolerance
    if tol is not None and "balance_tolerance" not in drop:
        ub[n_edges : n_edges + 2 * n_reps] = tol
    lb = np.zeros(n_var)
    lb[-1] = ub[-1] = 1.0
    if "locked" not in drop:
        lb[:n_edges] = (unit["locked"].to_numpy()[u] & is_current).astype(float)
    integrality = np.concatenate([np.ones(n_edges), np.zeros(4 * n_reps + 1)])
    return c, [constraint], Bounds(lb, ub), integrality


def _diagnose(
    unit: pd.DataFrame, km: np.ndarray, reps: pd.DataFrame, cfg: TerritoryConfig, u: np.ndarray, r: np.ndarray
) -> InfeasibleError:
    """Which constraint families, dropped alone, make the linear relaxation feasible: those bind."""

    def relaxed_feasible(drop: frozenset[str]) -> bool:
        c, (con,), bounds, _ = _model(unit, km, reps, cfg, u, r, drop)
        res = milp(
            c, integrality=np.zeros_like(c), bounds=bounds, constraints=[con], options={"time_limit": cfg.time_limit_s}
        )
        return res.status == 0

    if relaxed_feasible(frozenset()):
        return InfeasibleError(
            ["integrality"],
            (
                "no integral territory plan meets every constraint although a fractional one does: the units are too "
                "coarse for the balance tolerance; loosen balance_tolerance or raise max_moved_share"
            ),
        )
    binding = [f for f in FAMILIES if relaxed_feasible(frozenset({f}))]
    settings = {"balance_tolerance": cfg.balance_tolerance, "max_moved_share": cfg.max_moved_share}
    said = [f"{f} (= {settings[f]})" if f in settings else f for f in binding]
    reason = (
        f"no territory plan meets every constraint; dropping any one of {said} alone makes the linear relaxation "
        "feasible: loosen that constraint"
        if binding
        else "no territory plan meets every constraint, and no single constraint family explains "
        "it: several bind together (balance_tolerance, capacity_hours, max_moved_share, locked, contiguity)"
    )
    return InfeasibleError(binding or list(FAMILIES), reason)


def design_territories(
    accounts: pd.DataFrame, reps: pd.DataFrame, cfg: TerritoryConfig | None = None
) -> TerritoryResult:
    """Re-draw territories (one owner per account) under `cfg`; raises InfeasibleError or OptimizeError."""
    cfg = cfg or TerritoryConfig()
    reps = check_reps(reps)
    accounts = check_accounts(accounts, reps)
    check_capacity(accounts, reps)
    rep_index = pd.Index(reps["rep_id"])
    aggregate = len(accounts) > cfg.aggregate_above
    unit_of = _units(accounts, aggregate).to_numpy()
    work = accounts.assign(
        unit=unit_of,
        n=1,
        current=rep_index.get_indexer(accounts["current_rep"]),
        w_lat=accounts["latitude"] * accounts["workload"].clip(lower=1e-6),
        w_lon=accounts["longitude"] * accounts["workload"].clip(lower=1e-6),
        w=accounts["workload"].clip(lower=1e-6),
    )
    unit = work.groupby("unit").agg(
        potential=("potential", "sum"),
        workload=("workload", "sum"),
        n=("n", "sum"),
        current=("current", "first"),
        locked=("locked", "any"),
        w_lat=("w_lat", "sum"),
        w_lon=("w_lon", "sum"),
        w=("w", "sum"),
        cell=("grid_cell", "first"),
    )
    lat, lon = (unit["w_lat"] / unit["w"]).to_numpy(), (unit["w_lon"] / unit["w"]).to_numpy()
    km = haversine_km(
        lat[:, None],
        lon[:, None],
        reps["home_latitude"].to_numpy()[None, :],
        reps["home_longitude"].to_numpy()[None, :],
    )
    u, r = _candidate_edges(km, unit["current"].to_numpy(), unit["locked"].to_numpy(), cfg.candidates)
    log.info(
        "territories: %d accounts -> %d units%s, %d reps, %d candidate pairs",
        len(accounts),
        len(unit),
        " (aggregated to grid cell x current rep)" if aggregate else "",
        len(reps),
        len(u),
    )
    c, constraints, bounds, integrality = _model(unit, km, reps, cfg, u, r)
    started = time.perf_counter()
    res = milp(
        c,
        integrality=integrality,
        bounds=bounds,
        constraints=constraints,
        options={"time_limit": cfg.time_limit_s, "mip_rel_gap": cfg.mip_rel_gap, "disp": cfg.progress},
    )
    seconds = time.perf_counter() - started
    if res.x is None:
        if res.status == 2:
            raise _diagnose(unit, km, reps, cfg, u, r)
        raise InfeasibleError(
            ["time_limit_s"],
            f"HiGHS found no feasible territory plan within time_limit_s="
            f"{cfg.time_limit_s} s ({res.message}); raise the limit or loosen balance_tolerance",
        )
    x = res.x[: len(u)]
    best = pd.DataFrame({"u": u, "r": r, "x": x}).sort_values("x", kind="stable").groupby("u").tail(1)
    unit_owner = best.set_index("u")["r"].reindex(np.arange(len(unit))).to_numpy()
    owner = rep_index.to_numpy()[unit_owner[unit_of]]
    return TerritoryResult(
        owner=owner,
        status="optimal" if res.status == 0 else f"time limit: best incumbent ({res.message})",
        mip_gap=float(getattr(res, "mip_gap", np.nan) or 0.0),
        solve_seconds=seconds,
        units=len(unit),
        aggregated=aggregate,
        variables=len(u),
        before=plan_metrics(accounts, reps, accounts["current_rep"].to_numpy()),
        after=plan_metrics(accounts, reps, owner),
    )
