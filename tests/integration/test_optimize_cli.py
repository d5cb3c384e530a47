"""`fulqrun-ml optimize` end to end: both commands on a small simulated CRM and on a CRM export directory with
a locations file, writing Parquet, GeoJSON, PNG and a JSON summary; bad input is an error naming its field."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_geo import simulate_geography
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.optimize.commands import main
from fulqrun_ml.optimize.problem import InfeasibleError, OptimizeError

pytestmark = [pytest.mark.integration]
SMALL = ["data.simulate.n_opportunities=2000", "data.simulate.n_companies=300", "data.simulate.n_reps=10",
         "data.simulate.seed=5", "data.geo_seed=5"]  # fmt: skip


def _outputs(out: Path, name: str) -> dict:
    for suffix in (".parquet", ".geojson", ".png"):
        assert (out / f"{name}{suffix}").stat().st_size > 0
    geo = json.loads((out / f"{name}.geojson").read_text())
    assert geo["type"] == "FeatureCollection" and geo["features"][0]["geometry"]["type"] == "Point"
    return json.loads((out / f"{name}_summary.json").read_text())


def test_territories_and_assignment_on_the_simulator(tmp_path: Path) -> None:
    assert main(["territories", "--out", str(tmp_path), "--set", *SMALL, "solver.max_moved_share=0.2"]) == 0
    summary = _outputs(tmp_path, "territories")
    assert summary["moved_fraction"] <= 0.2 + 1e-9 and summary["cv_reduction"] > 0
    plan = pd.read_parquet(tmp_path / "territories.parquet")
    assert len(plan) == 300 and plan["moved"].mean() == pytest.approx(summary["moved_fraction"])
    assert main(["assignment", "--out", str(tmp_path), "--set", *SMALL]) == 0
    summary = _outputs(tmp_path, "assignment")
    assert summary["optimised"]["estimated_revenue"] - summary["optimised"]["travel_cost"] >= (
        summary["greedy"]["estimated_revenue"] - summary["greedy"]["travel_cost"] - 1e-6
    )
    assert "true_revenue_lift_vs_current" in summary


def test_crm_export_with_locations(tmp_path: Path) -> None:
    crm = simulate_crm(n_opportunities=1500, n_companies=200, n_reps=8, seed=9)
    world = simulate_geography(crm, seed=9)
    write_crm_directory(crm.tables, tmp_path / "crm")
    locations = world.accounts[["company_id", "latitude", "longitude"]]
    locations.to_csv(tmp_path / "locations.csv", index=False)
    args = ["--crm", str(tmp_path / "crm"), "--locations", str(tmp_path / "locations.csv"), "--out", str(tmp_path),
            "--set", "solver.time_limit_s=20"]  # fmt: skip
    assert main(["territories", *args]) == 0
    assert _outputs(tmp_path, "territories")["accounts"] == 200
    assert main(["assignment", *args]) == 0
    assert "true_revenue_lift_vs_current" not in _outputs(tmp_path, "assignment")  # no truth for a real CRM

    locations.iloc[1:].to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(OptimizeError, match="field 'latitude': 1 accounts have no location"):
        main(["territories", "--crm", str(tmp_path / "crm"), "--locations", str(tmp_path / "partial.csv")])
    with pytest.raises(OptimizeError, match=r"field 'latitude'.*--locations"):
        main(["territories", "--crm", str(tmp_path / "crm")])
    profiles = world.reps.assign(capacity_hours=1.0)
    profiles.to_parquet(tmp_path / "reps.parquet")
    with pytest.raises(InfeasibleError, match="capacity_hours"):
        main(["assignment", "--rep-profiles", str(tmp_path / "reps.parquet"), *args])


def test_an_unknown_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(OptimizeError, match=r"field 'solver.tolerance'"):
        main(["territories", "--out", str(tmp_path), "--set", "solver.tolerance=0.1"])


def test_routes_and_coverage_on_the_simulator(tmp_path: Path) -> None:
    assert main(["routes", "--out", str(tmp_path), "--set", *SMALL, "solver.time_limit_s=0.2"]) == 0
    summary = json.loads((tmp_path / "routes_summary.json").read_text())
    for name in ("routes.parquet", "routes_baseline.parquet", "routes.png"):
        assert (tmp_path / name).stat().st_size > 0
    kinds = {f["geometry"]["type"] for f in json.loads((tmp_path / "routes.geojson").read_text())["features"]}
    assert kinds == {"LineString", "Point"}
    plan = pd.read_parquet(tmp_path / "routes.parquet")
    visits = plan[plan["kind"] == "visit"]
    assert len(visits) == summary["ortools"]["visits"] > 0 and not visits["company_id"].duplicated().any()
    assert summary["value_source"] == "potential" and summary["nearest_neighbour"]["visits"] > 0
    assert not list(tmp_path.glob(".*tmp-*"))  # atomic publishing leaves no temporary file behind

    candidates = plan[plan["kind"].isin(["visit", "dropped"])]["company_id"]
    uplift = pd.DataFrame({"account_id": candidates, "expected_uplift": 50.0})
    uplift.to_parquet(tmp_path / "uplift.parquet")
    args = ["--out", str(tmp_path / "u"), "--uplift", str(tmp_path / "uplift.parquet"), "--set", *SMALL,
            "solver.time_limit_s=0.2"]  # fmt: skip
    assert main(["routes", *args]) == 0
    by_uplift = json.loads((tmp_path / "u" / "routes_summary.json").read_text())
    assert by_uplift["value_source"] == "expected_uplift"
    assert by_uplift["ortools"]["value_covered"] == pytest.approx(50.0 * by_uplift["ortools"]["visits"])

    assert main(["coverage", "--out", str(tmp_path), "--set", *SMALL]) == 0
    summary = _coverage_outputs(tmp_path)
    assert summary["win_rates"] == "shrunk segment x stage" and "truth" in summary
    assert 0.0 <= summary["truth"]["quota"]["interval_coverage"] <= 1.0
    crm = simulate_crm(n_opportunities=2000, n_companies=300, n_reps=10, seed=5)
    opps = crm.tables.opportunities
    scores = pd.DataFrame({"opportunity_id": opps["id"], "probability": 0.5})
    scores.to_parquet(tmp_path / "scores.parquet")
    assert main(["coverage", "--out", str(tmp_path), "--predictions", str(tmp_path / "scores.parquet"),
                 "--set", *SMALL]) == 0  # fmt: skip
    territories = pd.read_parquet(tmp_path / "coverage_territories.parquet")
    assert territories["expected_bookings"].sum() == pytest.approx(0.5 * territories["open_value"].sum())


def _coverage_outputs(out: Path) -> dict:
    for name in ("coverage.parquet", "coverage_segments.parquet", "coverage_territories.parquet", "coverage.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "coverage_summary.json").read_text())
    accounts = pd.read_parquet(out / "coverage.parquet")
    assert len(accounts) == summary["accounts"] and accounts["white_space"].sum() == summary["white_space_accounts"]
    assert len(pd.read_parquet(out / "coverage_territories.parquet")) == summary["reps"]
    return summary


def test_routes_and_coverage_on_a_crm_export(tmp_path: Path) -> None:
    crm = simulate_crm(n_opportunities=1500, n_companies=200, n_reps=8, seed=9)
    world = simulate_geography(crm, seed=9)
    write_crm_directory(crm.tables, tmp_path / "crm")
    locations = world.accounts[["company_id", "latitude", "longitude"]].assign(open_hour=8.0, close_hour=16.0)
    locations.to_csv(tmp_path / "locations.csv", index=False)
    world.reps.to_parquet(tmp_path / "reps.parquet")  # routes need real home bases (not the accounts' centre)
    args = ["--crm", str(tmp_path / "crm"), "--locations", str(tmp_path / "locations.csv"), "--out", str(tmp_path),
            "--rep-profiles", str(tmp_path / "reps.parquet")]  # fmt: skip
    assert main(["routes", *args, "--set", "solver.time_limit_s=0.2"]) == 0
    plan = pd.read_parquet(tmp_path / "routes.parquet")
    visits = plan[plan["kind"] == "visit"]
    assert len(visits) and visits["start_min"].min() >= 8 * 60 and visits["end_min"].max() <= 16 * 60
    assert main(["coverage", *args]) == 0
    assert "truth" not in _coverage_outputs(tmp_path)  # no truth for a real CRM

    locations.assign(open_hour=17.0).to_csv(tmp_path / "bad.csv", index=False)
    bad = ["--crm", str(tmp_path / "crm"), "--locations", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b")]
    with pytest.raises(OptimizeError, match=r"field 'close_hour'.*impossible time window"):
        main(["routes", *bad])
    assert not (tmp_path / "b").exists()  # refused before anything is written
    with pytest.raises(OptimizeError, match=r"field 'visit_minutes'"):
        main(["routes", *args, "--set", "solver.visit_minutes=-10"])
    with pytest.raises(OptimizeError, match=r"field 'uplift'"):
        main(["routes", *args, "--uplift", str(tmp_path / "missing.parquet")])
