"""Weekly visit routes per rep: a vehicle routing problem with time windows solved by OR-Tools, and the
nearest-neighbour baseline under the same limits.

**Days as vehicles.** Each rep is one independent problem (reps share no accounts). Its week is modelled as
`days` vehicles that all start and end at the rep's home (node 0): a vehicle is a day. This is the standard
OR-Tools formulation and gives every rule directly: each account is visited at most once a week (a node is
on at most one vehicle, or dropped through its disjunction), every day starts and ends at home, and the
working-day limit is a span bound per vehicle. The alternative, one vehicle over a multi-day horizon with
forced overnight returns home, needs break intervals and a horizon five times longer for the same answer.
The days are interchangeable (symmetric); day numbers are the vehicle order.

Per rep and day, with a "time" dimension in seconds since midnight:
- a visit starts within its account's window and ends before it closes: start in [open, close - duration];
- the rep leaves home no earlier than `day_start_hour` and is back by `day_end_hour`;
- leaving home to being back (travel + visits + waiting) is at most `day_hours` (span upper bound);
- transit i -> j = visit duration at i + road km / `speed_kmh` (road km = great-circle km x `road_factor`).
Objective (cents): travel cost (road km x the rep's `travel_cost_per_km`) + for every dropped candidate a
penalty equal to its value, so the solver trades travel against value. Guided local search improves the
first solution until `time_limit_s` (per rep): the result is the best found, not a proven optimum.
A stop that cannot fit a working day even alone (too far for its window) is not given to the solver; it is
reported as `unreachable`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator_geo import haversine_km
from fulqrun_ml.optimize.problem import InfeasibleError
from fulqrun_ml.optimize.routes_candidates import RouteConfig, ortools_module

log = logging.getLogger(__name__)


@dataclass
class RepWeek:
    """One rep's week: for each day the candidate row positions in visiting order, with visit start times."""

    rep_id: str
    days: list[list[int]]
    starts: list[list[int]]  # visit start, seconds since midnight, per stop
    leave: list[int]  # leaving home, per day
    back: list[int]  # back home, per day
    unreachable: list[int]


def road_km(lat: np.ndarray, lon: np.ndarray, cfg: RouteConfig) -> np.ndarray:
    """[n x n] road km between points (great-circle x road_factor)."""
    return cfg.road_factor * haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])


def travel_seconds(km: np.ndarray, cfg: RouteConfig) -> np.ndarray:
    """Whole seconds, rounded up, so the solver's integer times never undercount a drive."""
    return np.ceil(km / cfg.speed_kmh * 3600.0).astype(np.int64)


def _nodes(home: tuple[float, float], stops: pd.DataFrame, cfg: RouteConfig) -> tuple[np.ndarray, ...]:
    lat = np.concatenate([[home[0]], stops["latitude"].to_numpy(dtype=float)])
    lon = np.concatenate([[home[1]], stops["longitude"].to_numpy(dtype=float)])
    km = road_km(lat, lon, cfg)
    service = np.concatenate([[0], stops["service_s"].to_numpy(dtype=np.int64)])
    return km, travel_seconds(km, cfg), service


def reachable(stops: pd.DataFrame, travel: np.ndarray, cfg: RouteConfig) -> np.ndarray:
    """Whether each stop fits a working day on its own (home -> stop -> home within every limit)."""
    day_start, day_end, span = (int(cfg.day_start_hour * 3600), int(cfg.day_end_hour * 3600),
                                round(cfg.day_hours * 3600))  # fmt: skip
    out, back = travel[0, 1:], travel[1:, 0]
    start = np.maximum(stops["open_s"].to_numpy(), day_start + out)
    end = start + stops["service_s"].to_numpy()
    service = stops["service_s"].to_numpy()
    return (end <= stops["close_s"].to_numpy()) & (end + back <= day_end) & (out + service + back <= span)


def solve_rep_week(
    rep_id: str, home: tuple[float, float], cost_per_km: float, stops: pd.DataFrame, cfg: RouteConfig
) -> RepWeek:
    """The rep's week from OR-Tools (rules in the module docstring); `stops` rows are candidate visits."""
    km, travel, service = _nodes(home, stops, cfg)
    ok = np.flatnonzero(reachable(stops, travel, cfg))
    unreachable = sorted(set(range(len(stops))) - set(ok.tolist()))
    empty = RepWeek(rep_id, [[] for _ in range(cfg.days)], [[] for _ in range(cfg.days)], [], [], unreachable)
    if not len(ok):
        return empty
    pywrapcp, routing_enums_pb2 = ortools_module("pywrapcp"), ortools_module("routing_enums_pb2")
    keep = np.concatenate([[0], ok + 1])  # node 0 = home, then the reachable stops
    km, travel, service = km[np.ix_(keep, keep)], travel[np.ix_(keep, keep)], service[keep]
    cost = np.round(km * cost_per_km * 100.0).astype(np.int64)  # cents: OR-Tools costs are integers
    transit = service[:, None] + travel
    manager = pywrapcp.RoutingIndexManager(len(keep), cfg.days, 0)
    routing = pywrapcp.RoutingModel(manager)
    routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(cost.tolist()))
    day_start, day_end = int(cfg.day_start_hour * 3600), int(cfg.day_end_hour * 3600)
    routing.AddDimension(routing.RegisterTransitMatrix(transit.tolist()), day_end, day_end, False, "time")
    time = routing.GetDimensionOrDie("time")
    chosen = stops.iloc[ok]
    penalty = np.round(chosen["value"].to_numpy(dtype=float) * 100.0).astype(np.int64)
    windows = zip(chosen["open_s"], chosen["close_s"] - chosen["service_s"], penalty, strict=True)
    for node, (first, last, cents) in enumerate(windows, start=1):
        index = manager.NodeToIndex(node)
        time.CumulVar(index).SetRange(int(first), int(last))
        routing.AddDisjunction([index], int(cents))
    for day in range(cfg.days):
        for index in (routing.Start(day), routing.End(day)):
            time.CumulVar(index).SetRange(day_start, day_end)
        time.SetSpanUpperBoundForVehicle(round(cfg.day_hours * 3600), day)
        routing.AddVariableMaximizedByFinalizer(time.CumulVar(routing.Start(day)))  # leave as late as possible
        routing.AddVariableMinimizedByFinalizer(time.CumulVar(routing.End(day)))  # and come back early
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = getattr(routing_enums_pb2.FirstSolutionStrategy, cfg.first_solution_strategy)
    params.local_search_metaheuristic = getattr(routing_enums_pb2.LocalSearchMetaheuristic, cfg.metaheuristic)
    params.time_limit.FromMilliseconds(int(cfg.time_limit_s * 1000))
    params.log_search = cfg.progress
    solution = routing.SolveWithParameters(params)
    if solution is None:
        raise InfeasibleError(["time_limit_s"], f"OR-Tools found no route plan for rep {rep_id} within "
                              f"time_limit_s={cfg.time_limit_s}; raise the limit")  # fmt: skip
    week = RepWeek(rep_id, [], [], [], [], unreachable)
    for day in range(cfg.days):
        index, route, starts = solution.Value(routing.NextVar(routing.Start(day))), [], []
        while not routing.IsEnd(index):
            route.append(int(ok[manager.IndexToNode(index) - 1]))
            starts.append(int(solution.Min(time.CumulVar(index))))
            index = solution.Value(routing.NextVar(index))
        week.days.append(route)
        week.starts.append(starts)
        week.leave.append(int(solution.Min(time.CumulVar(routing.Start(day)))))
        week.back.append(int(solution.Min(time.CumulVar(routing.End(day)))))
    return week


def nearest_neighbour_week(rep_id: str, home: tuple[float, float], stops: pd.DataFrame, cfg: RouteConfig) -> RepWeek:
    """Baseline: each day, from home, drive to the nearest unvisited stop that still fits (its window, the day's
    end and the working-day span, counting the drive home), until none fits; value is ignored. The rep leaves
    home just in time for the first stop (waiting at home does not count against the day)."""
    _, travel, service = _nodes(home, stops, cfg)
    ok = reachable(stops, travel, cfg)
    opening, closing = stops["open_s"].to_numpy(), stops["close_s"].to_numpy()
    day_start, day_end = int(cfg.day_start_hour * 3600), int(cfg.day_end_hour * 3600)
    span = round(cfg.day_hours * 3600)
    left = set(np.flatnonzero(ok).tolist())
    week = RepWeek(rep_id, [], [], [], [], sorted(set(range(len(stops))) - left))
    for _ in range(cfg.days):
        here, now, leave, route, starts = 0, day_start, None, [], []
        while True:
            best = None
            for stop in sorted(left, key=lambda s: (travel[here, s + 1], s)):
                start = max(now + travel[here, stop + 1], opening[stop])
                departed = start - travel[0, stop + 1] if leave is None else leave
                departed = max(departed, day_start)
                end = start + service[stop + 1]
                home_at = end + travel[stop + 1, 0]
                if end <= closing[stop] and home_at <= day_end and home_at - departed <= span:
                    best = (stop, start, departed)
                    break
            if best is None:
                break
            stop, start, leave = best
            route.append(stop)
            starts.append(int(start))
            left.discard(stop)
            here, now = stop + 1, start + service[stop + 1]
        week.days.append(route)
        week.starts.append(starts)
        week.leave.append(int(leave if leave is not None else day_start))
        week.back.append(int(now + travel[here, 0]) if route else int(day_start))
    return week


def week_rows(week: RepWeek, home: tuple[float, float], stops: pd.DataFrame, cfg: RouteConfig) -> pd.DataFrame:
    """One row per home departure, visit and return (and per dropped or unreachable candidate): the plan table."""
    rows = []
    visited = {s for day in week.days for s in day}
    lat, lon = stops["latitude"].to_numpy(dtype=float), stops["longitude"].to_numpy(dtype=float)
    for day, (route, starts) in enumerate(zip(week.days, week.starts, strict=True), start=1):
        if not route:
            continue
        points = [home, *((lat[s], lon[s]) for s in route), home]
        legs = cfg.road_factor * haversine_km(*np.array(points[:-1]).T, *np.array(points[1:]).T)
        rows.append({"kind": "home_start", "day": day, "stop": 0, "start_min": week.leave[day - 1] / 60,
                     "end_min": week.leave[day - 1] / 60, "km_from_previous": 0.0, "latitude": home[0],
                     "longitude": home[1]})  # fmt: skip
        for order, (s, start) in enumerate(zip(route, starts, strict=True), start=1):
            row = stops.iloc[s]
            rows.append({"kind": "visit", "day": day, "stop": order, "company_id": row["company_id"],
                         "start_min": start / 60, "end_min": (start + row["service_s"]) / 60,
                         "km_from_previous": float(legs[order - 1]), "latitude": lat[s], "longitude": lon[s],
                         "value": float(row["value"]), "open_min": row["open_s"] / 60,
                         "close_min": row["close_s"] / 60})  # fmt: skip
        rows.append({"kind": "home_end", "day": day, "stop": len(route) + 1, "start_min": week.back[day - 1] / 60,
                     "end_min": week.back[day - 1] / 60, "km_from_previous": float(legs[-1]), "latitude": home[0],
                     "longitude": home[1]})  # fmt: skip
    for s in range(len(stops)):
        if s not in visited:
            row = stops.iloc[s]
            rows.append({"kind": "unreachable" if s in week.unreachable else "dropped", "company_id": row["company_id"],
                         "latitude": lat[s], "longitude": lon[s], "value": float(row["value"]),
                         "open_min": row["open_s"] / 60, "close_min": row["close_s"] / 60})  # fmt: skip
    return pd.DataFrame(rows).assign(rep_id=week.rep_id)


def plan_week(candidates: pd.DataFrame, reps: pd.DataFrame, cfg: RouteConfig, baseline: bool = False) -> pd.DataFrame:
    """Every rep's week (OR-Tools, or the nearest-neighbour baseline) as one plan table."""
    frames = []
    for number, rep in enumerate(reps.itertuples(index=False), start=1):
        stops = candidates[candidates["current_rep"] == rep.rep_id].reset_index(drop=True)
        if stops.empty:
            continue
        log.info("routes%s: rep %d/%d, %d candidates", " baseline" if baseline else "", number, len(reps), len(stops))
        home = (float(rep.home_latitude), float(rep.home_longitude))
        week = (nearest_neighbour_week(rep.rep_id, home, stops, cfg) if baseline
                else solve_rep_week(rep.rep_id, home, float(rep.travel_cost_per_km), stops, cfg))  # fmt: skip
        frames.append(week_rows(week, home, stops, cfg))
    columns = ["rep_id", "kind", "day", "stop", "company_id", "start_min", "end_min", "km_from_previous",
               "latitude", "longitude", "value", "open_min", "close_min"]  # fmt: skip
    plan = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return plan.reindex(columns=columns)


def plan_totals(plan: pd.DataFrame, candidates: pd.DataFrame, cfg: RouteConfig) -> dict:
    """Travel km / hours, working hours, visits and value covered of a plan table (all reps)."""
    visits = plan[plan["kind"] == "visit"]
    travel_km = float(plan["km_from_previous"].fillna(0.0).sum())
    ends, starts = plan[plan["kind"] == "home_end"], plan[plan["kind"] == "home_start"]
    worked = float(ends["start_min"].sum() - starts["end_min"].sum()) / 60 if len(ends) else 0.0
    total = float(candidates["value"].sum())
    return {
        "visits": len(visits),
        "candidates": len(candidates),
        "value_covered": float(visits["value"].sum()),
        "value_covered_share": float(visits["value"].sum()) / total if total > 0 else math.nan,
        "travel_km": travel_km,
        "travel_hours": travel_km / cfg.speed_kmh,
        "working_hours": worked,
        "rep_days_used": len(starts),
        "unreachable": int((plan["kind"] == "unreachable").sum()),
    }
