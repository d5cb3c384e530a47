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
