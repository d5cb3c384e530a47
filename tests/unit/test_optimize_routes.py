"""Visit routing: OR-Tools' weekly plan equals brute force on a tiny instance, every constraint (time windows,
working-day span, day start/end, each visit at most once, start and end at home) holds on its output and on
the nearest-neighbour baseline's, and bad input is refused by field."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_geo import haversine_km, simulate_geography, visiting_hours
from fulqrun_ml.optimize.commands import run_routes
from fulqrun_ml.optimize.estimates import account_estimates
from fulqrun_ml.optimize.inputs import OptimizeInputs
from fulqrun_ml.optimize.problem import OptimizeError
from fulqrun_ml.optimize.routes import plan_totals, plan_week
from fulqrun_ml.optimize.routes_candidates import RouteConfig, read_uplift, visit_candidates

HOME = (40.0, -74.0)


def stops(n: int, seed: int, rep: str = "r0", spread: float = 0.25) -> pd.DataFrame:
    """n candidate visits around HOME with mixed windows, durations and values (some barely worth a drive)."""
    rng = np.random.default_rng(seed)
    windows = np.array([(8, 12), (9, 17), (13, 18)])[rng.integers(0, 3, n)]
    return pd.DataFrame(
        {
            "company_id": [f"{rep}-a{i}" for i in range(n)],
            "current_rep": rep,
            "latitude": HOME[0] + rng.uniform(-spread, spread, n),
            "longitude": HOME[1] + rng.uniform(-spread, spread, n),
            "value": np.round(rng.choice([2.0, 8.0, 40.0, 300.0], n) * rng.uniform(0.5, 1.5, n), 2),
            "open_s": windows[:, 0] * 3600,
            "close_s": windows[:, 1] * 3600,
            "service_s": rng.choice([45, 60, 90, 120], n) * 60,
        }
    )


def reps_table(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"rep_id": ids, "home_latitude": HOME[0], "home_longitude": HOME[1],
                         "capacity_hours": 1000.0, "travel_cost_per_km": 0.5})  # fmt: skip


def seconds(a: tuple[float, float], b: tuple[float, float], cfg: RouteConfig) -> float:
    return cfg.road_factor * float(haversine_km(a[0], a[1], b[0], b[1])) / cfg.speed_kmh * 3600.0


def best_day(seq: tuple[int, ...], cand: pd.DataFrame, cfg: RouteConfig) -> float | None:
    """Travel cost (cents) of visiting `seq` in order in one day if some departure time makes it feasible.

    Written independently of the solver: for a fixed order the span is smallest when leaving as late as the
    windows allow, and coming back by day_end is monotone in the departure, so a bisection over departures
    finds the latest feasible one."""
    lat, lon = cand["latitude"].to_numpy()[list(seq)], cand["longitude"].to_numpy()[list(seq)]
    points = [HOME, *zip(lat, lon, strict=True), HOME]
    legs = [seconds(points[i], points[i + 1], cfg) for i in range(len(points) - 1)]
    opening, closing, service = (cand[c].to_numpy(dtype=float)[list(seq)] for c in ("open_s", "close_s", "service_s"))

    def run(depart: float) -> tuple[bool, float]:
        now = depart
        for k in range(len(seq)):
            start = max(now + legs[k], opening[k])
            if start + service[k] > closing[k]:
                return False, np.inf
            now = start + service[k]
        return True, now + legs[-1]

    lo, hi = cfg.day_start_hour * 3600, cfg.day_end_hour * 3600
    ok, back = run(lo)
    if not ok or back > hi:
        return None
    for _ in range(40):  # latest departure that keeps every window and day_end
        mid = (lo + hi) / 2
        ok, back = run(mid)
        lo, hi = (mid, hi) if ok and back <= cfg.day_end_hour * 3600 else (lo, mid)
    _, back = run(lo)
    if back - lo > cfg.day_hours * 3600 + 1e-6:
        return None
    km = sum(cfg.road_factor * float(haversine_km(*points[i], *points[i + 1])) for i in range(len(points) - 1))
    return km * 0.5 * 100.0


def brute_force(cand: pd.DataFrame, cfg: RouteConfig) -> float:
    """Minimum of travel cents + dropped value cents over every split into `days` ordered day routes."""
    n = len(cand)
    best: dict[frozenset, float] = {}
    for size in range(n + 1):
        for subset in itertools.combinations(range(n), size):
            costs = [best_day(p, cand, cfg) for p in itertools.permutations(subset)]
            best[frozenset(subset)] = min((c for c in costs if c is not None), default=np.inf)
    value = cand["value"].to_numpy() * 100.0
    total = np.inf
    for split in itertools.product(range(cfg.days + 1), repeat=n):  # day index, or `days` = dropped
        days = [frozenset(i for i in range(n) if split[i] == d) for d in range(cfg.days)]
        dropped = sum(value[i] for i in range(n) if split[i] == cfg.days)
        total = min(total, sum(best[d] for d in days) + dropped)
    return total


def plan_cost(plan: pd.DataFrame, cand: pd.DataFrame) -> float:
    visited = set(plan.loc[plan["kind"] == "visit", "company_id"])
    dropped = cand.loc[~cand["company_id"].isin(visited), "value"].sum()
    return float(plan["km_from_previous"].fillna(0).sum() * 0.5 * 100.0 + dropped * 100.0)


def assert_feasible(plan: pd.DataFrame, cand: pd.DataFrame, reps: pd.DataFrame, cfg: RouteConfig) -> None:
    """Every documented constraint, recomputed from the plan table alone."""
    visits = plan[plan["kind"] == "visit"]
    assert not visits["company_id"].duplicated().any()  # each visit at most once a week
    owner = cand.set_index("company_id")["current_rep"]
    assert (owner.reindex(visits["company_id"]).to_numpy() == visits["rep_id"].to_numpy()).all()
    homes = reps.set_index("rep_id")
    info = cand.set_index("company_id")
    for (rep, day), route in plan[plan["day"].notna()].groupby(["rep_id", "day"]):
        route = route.sort_values("stop")
        assert 1 <= day <= cfg.days
        home = (homes.at[rep, "home_latitude"], homes.at[rep, "home_longitude"])
        assert list(route["kind"]) == ["home_start"] + ["visit"] * (len(route) - 2) + ["home_end"]
        assert np.allclose(route.iloc[[0, -1]][["latitude", "longitude"]].to_numpy(), [home, home])
        leave, back = route["end_min"].iat[0], route["start_min"].iat[-1]
        assert leave >= cfg.day_start_hour * 60 - 1e-9 and back <= cfg.day_end_hour * 60 + 1e-9
        assert back - leave <= cfg.day_hours * 60 + 1e-9  # working-day limit
        points = list(zip(route["latitude"], route["longitude"], strict=True))
        for k in range(1, len(route)):
            drive = seconds(points[k - 1], points[k], cfg) / 60
            assert route["start_min"].iat[k] >= route["end_min"].iat[k - 1] + drive - 1 / 60  # travel time
            assert route["km_from_previous"].iat[k] == pytest.approx(
                cfg.road_factor * float(haversine_km(*points[k - 1], *points[k])), rel=1e-9
            )
        for row in route.iloc[1:-1].itertuples():
            account = info.loc[row.company_id]
            assert row.start_min >= account["open_s"] / 60 - 1e-9  # time window
            assert row.end_min <= account["close_s"] / 60 + 1e-9
            assert row.end_min - row.start_min == pytest.approx(account["service_s"] / 60)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ortools_matches_brute_force(seed: int) -> None:
    cfg = RouteConfig(days=2, day_hours=5.0, time_limit_s=1.0)
    cand = stops(6, seed)
    reps = reps_table(["r0"])
    plan = plan_week(cand, reps, cfg)
    assert_feasible(plan, cand, reps, cfg)
    kinds = plan["kind"].value_counts()
    assert kinds.get("visit", 0) >= 2 and kinds.get("dropped", 0) >= 1  # a real trade-off, not all-or-nothing
    optimum = brute_force(cand, cfg)
    assert plan_cost(plan, cand) == pytest.approx(optimum, abs=5.0)  # cents: the solver rounds each arc


def test_every_constraint_holds_on_a_busy_week() -> None:
    cfg = RouteConfig(days=5, day_hours=7.0, time_limit_s=1.0)
    cand = pd.concat([stops(30, 7, "r0", spread=0.6), stops(25, 8, "r1", spread=0.6)], ignore_index=True)
    cand.loc[0, ["latitude", "longitude"]] = [44.5, -74.0]  # 500 km away: no working day can hold it
    reps = reps_table(["r0", "r1"])
    plan, baseline = plan_week(cand, reps, cfg), plan_week(cand, reps, cfg, baseline=True)
    for result in (plan, baseline):
        assert_feasible(result, cand, reps, cfg)
        assert result.loc[result["company_id"] == "r0-a0", "kind"].tolist() == ["unreachable"]
        assert (result["kind"] == "dropped").any()  # the week is too short for every candidate
    solved = plan_totals(plan, cand, cfg)
    assert solved["visits"] > 0 and solved["rep_days_used"] <= 10 and solved["unreachable"] == 1
    travel_cents = lambda p: p["km_from_previous"].fillna(0).sum() * 50  # noqa: E731
    dropped = lambda p: cand.loc[~cand["company_id"].isin(p.loc[p["kind"] == "visit", "company_id"]), "value"].sum()  # noqa: E731
    assert travel_cents(plan) + 100 * dropped(plan) <= travel_cents(baseline) + 100 * dropped(baseline)


def test_candidates_follow_the_rule_and_the_uplift(tmp_path) -> None:
    crm = simulate_crm(n_opportunities=1500, n_reps=6, n_companies=200, seed=4)
    world = simulate_geography(crm, seed=4)
    estimates = account_estimates(crm.tables, world.deal_outcomes)
    accounts = world.accounts.drop(columns=["industry", "size"]).merge(estimates, on="company_id")
    accounts = accounts.merge(visiting_hours(world, 4), on="company_id")
    cfg = RouteConfig(min_days_since_meeting=30, min_potential_quantile=0.6, max_candidates_per_rep=10)
    cand = visit_candidates(accounts, crm.tables, cfg)
    assert len(cand) and (cand.groupby("current_rep").size() <= 10).all()
    assert (cand["days_since_meeting"] >= 30).all()
    high = cand["potential"] >= accounts["potential"].quantile(0.6)
    assert (high | (cand["open_deals"] > 0)).all()
    assert (cand["value"] == cand["potential"]).all() and set(cand["open_s"] // 3600) <= {8, 9, 13}
    ids = accounts["company_id"].astype(str)
    pd.DataFrame({"account_id": ids, "expected_uplift": np.arange(len(ids)) - 5.0}).to_parquet(tmp_path / "u.parquet")
    by_uplift = visit_candidates(accounts, crm.tables, cfg, read_uplift(tmp_path / "u.parquet"))
    uplift = pd.Series(np.arange(len(ids)) - 5.0, index=ids)
    expected = np.clip(by_uplift["company_id"].astype(str).map(uplift), 0, None)
    assert np.allclose(by_uplift["value"], expected) and (by_uplift["value_source"] == "expected_uplift").all()


def test_bad_input_is_named(tmp_path) -> None:
    crm = simulate_crm(n_opportunities=600, n_reps=4, n_companies=60, seed=2)
    world = simulate_geography(crm, seed=2)
    accounts = world.accounts.merge(account_estimates(crm.tables, world.deal_outcomes)[["company_id", "potential"]])
    with pytest.raises(OptimizeError, match=r"field 'close_hour'.*impossible time window"):
        visit_candidates(accounts.assign(open_hour=15.0, close_hour=10.0), crm.tables, RouteConfig())
    with pytest.raises(OptimizeError, match=r"field 'close_hour'.*shorter than the visit"):
        visit_candidates(accounts.assign(open_hour=9.0, close_hour=9.5), crm.tables, RouteConfig(visit_minutes=60))
    with pytest.raises(OptimizeError, match=r"field 'visit_minutes'.*negative"):
        visit_candidates(accounts.assign(visit_minutes=-30.0), crm.tables, RouteConfig())
    with pytest.raises(OptimizeError, match=r"field 'visit_minutes'"):
        RouteConfig(visit_minutes=-1)
    with pytest.raises(OptimizeError, match=r"field 'day_hours'"):
        RouteConfig(day_hours=0)
    with pytest.raises(OptimizeError, match=r"field 'metaheuristic'"):
        RouteConfig(metaheuristic="HILL_CLIMB")
    located = accounts.merge(account_estimates(crm.tables, world.deal_outcomes).drop(columns="potential"))
    located.loc[3, "latitude"] = np.nan
    inputs = OptimizeInputs(located, world.reps, world.deal_outcomes, crm.tables, world)
    with pytest.raises(OptimizeError, match=r"field 'latitude': 1 accounts have no location"):
        run_routes(inputs, RouteConfig(), tmp_path / "out", None)
    assert not (tmp_path / "out").exists()  # refused before anything is written
    pd.DataFrame({"account_id": ["a"], "uplift": [1.0]}).to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(OptimizeError, match=r"field 'expected_uplift'"):
        read_uplift(tmp_path / "u.csv")
