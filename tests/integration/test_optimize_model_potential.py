"""`fulqrun-ml optimize ... --potential models`: the session's tiny deal-win model (trained and exported through the
real spine by tests/conftest.py) drives the potential of territories and assignment on the CRM it was trained on;
the account terms fall back to the statistical estimate and the summary says so; bad settings write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.optimize.commands import main
from fulqrun_ml.optimize.problem import OptimizeError
from fulqrun_ml.registry.aliases import promote
from tests.registry_copy import copy_version

pytestmark = [pytest.mark.integration]
# The conftest model's training CRM (TINY_DATA, simulator seed 7), so the model scores the book it learnt.
TINY = ["data.simulate.n_opportunities=1500", "data.simulate.n_companies=300", "data.simulate.n_reps=10",
        "data.simulate.seed=7", "data.geo_seed=7", "solver.time_limit_s=15"]  # fmt: skip


@pytest.fixture(scope="module")
def models_dir(published, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("optimize_models")
    version = copy_version(published[0], models)
    promote(models, "deal_win", version.version, "production", actor="test")
    return models


def test_territories_and_assignment_on_model_potential(models_dir: Path, tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--potential", "models", "--models-dir", str(models_dir), "--set", *TINY]
    assert main(["territories", *args]) == 0
    summary = json.loads((tmp_path / "territories_summary.json").read_text())
    terms = summary["potential"]["terms"]
    assert terms["open_deals"] == {"source": "model", "model": "deal_win", "version": 1}
    assert terms["expansion"]["source"] == terms["churn"]["source"] == "estimates"
    plan = pd.read_parquet(tmp_path / "territories.parquet")
    signed = plan["open_deals_value"] + plan["expansion_value"] - plan["churn_loss"]
    assert np.allclose(plan["potential"], np.maximum(signed, 0.0))
    assert not np.allclose(plan["potential"], plan["potential_estimate"])  # the solver read the model potential

    assert main(["assignment", *args]) == 0
    summary = json.loads((tmp_path / "assignment_summary.json").read_text())
    assert summary["potential"]["source"] == "models" and "true_revenue_lift_vs_current" in summary
    plan = pd.read_parquet(tmp_path / "assignment.parquet")
    assert plan["expected_revenue_after"].sum() == pytest.approx(summary["optimised"]["estimated_revenue"])


@pytest.mark.parametrize(
    ("extra", "field"),
    [(["--models-dir", "EMPTY"], "potential.models_dir"), (["--set", "potential.alias=prod"], "potential.alias")],
)
def test_bad_model_settings_write_nothing(models_dir: Path, tmp_path: Path, extra: list[str], field: str) -> None:
    (tmp_path / "empty").mkdir()
    extra = [str(tmp_path / "empty") if e == "EMPTY" else e for e in extra]
    base = ["territories", "--out", str(tmp_path / "out"), "--potential", "models", "--models-dir", str(models_dir)]
    with pytest.raises(OptimizeError, match=f"field '{field}'"):
        main([*base, *extra, "--set", *TINY] if "--set" not in extra else [*base, *extra, *TINY])
    assert not (tmp_path / "out").exists()
