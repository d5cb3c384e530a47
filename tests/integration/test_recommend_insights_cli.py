"""`fulqrun-ml recommend pricing|coaching|strategy` end to end: each command on a small simulated CRM and on a CRM
export directory, writing Parquet and a JSON summary; bad input is an error naming its field (exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_pricing import simulate_pricing
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.recommend.insight_commands import main

pytestmark = [pytest.mark.integration]
SMALL = ["data.simulate.n_opportunities=1500", "data.simulate.n_companies=250", "data.simulate.n_reps=10",
         "data.simulate.seed=6"]  # fmt: skip


def _summary(out: Path, name: str) -> dict:
    summary = json.loads((out / f"{name}_summary.json").read_text())
    for path in summary["outputs"].values():
        assert Path(path).stat().st_size > 0
    assert not list(out.glob(".*.tmp-*"))  # nothing half-written left behind
    return summary


def test_all_three_commands_on_the_simulator(tmp_path: Path) -> None:
    assert main(["pricing", "--out", str(tmp_path), "--set", *SMALL, "model.n_bootstrap=2",
                 "model.max_discount=0.2"]) == 0  # fmt: skip
    summary = _summary(tmp_path, "pricing")
    prices = pd.read_parquet(tmp_path / "pricing.parquet")
    assert len(prices) == summary["priced_deals"] > 0
    assert prices["recommended_discount"].between(0, 0.2).all()
    assert set(summary["true_regret_per_deal"]) == {"model", "no_discount", "historical", "fixed_10pct"}

    assert main(["coaching", "--out", str(tmp_path), "--set", *SMALL]) == 0
    summary = _summary(tmp_path, "coaching")
    assert summary["cells"] == len(pd.read_parquet(tmp_path / "coaching.parquet"))
    assert "spearman_mean_over_stages" in summary["truth"]["adjusted_shrunk"]

    assert main(["strategy", "--out", str(tmp_path), "--set", *SMALL, "model.n_bootstrap=5"]) == 0
    summary = _summary(tmp_path, "strategy")
    segments = pd.read_parquet(tmp_path / "strategy.parquet")
    assert len(segments) == summary["segments"] and summary["truth"]["n_segments"] > 0


def test_crm_export_with_a_pricing_file(tmp_path: Path) -> None:
    crm = simulate_crm(n_opportunities=1500, n_companies=250, n_reps=10, seed=8)
    write_crm_directory(crm.tables, tmp_path / "crm")
    logged = simulate_pricing(crm, seed=8).deals[["opportunity_id", "discount", "competitor_present"]]
    logged.to_csv(tmp_path / "pricing.csv", index=False)
    base = ["--crm", str(tmp_path / "crm"), "--out", str(tmp_path)]
    assert main(["pricing", *base, "--pricing", str(tmp_path / "pricing.csv"), "--set", "model.n_bootstrap=2"]) == 0
    assert "true_regret_per_deal" not in _summary(tmp_path, "pricing")  # no truth for a real CRM
    assert main(["coaching", *base]) == 0
    assert "truth" not in _summary(tmp_path, "coaching")
    assert main(["strategy", *base, "--set", "model.n_bootstrap=5"]) == 0
    assert _summary(tmp_path, "strategy")["segments"] > 0

    with pytest.raises(FieldValidationError, match=r"field 'discount'"):
        main(["pricing", *base])  # the contract has no discount: a pricing file is required
    logged.drop(columns=["discount"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(FieldValidationError, match=r"field 'discount'"):
        main(["pricing", *base, "--pricing", str(tmp_path / "bad.csv")])


def test_strategy_surfaces_products_when_the_export_has_them(tmp_path: Path) -> None:
    """Simulator with products: win rate by product x segment with intervals, checked against the truth. An export
    whose CSV lacks the optional product column still loads, and the summary says why there is no product table."""
    assert main(["strategy", "--out", str(tmp_path), "--set", *SMALL, "model.n_bootstrap=3", "data.products=true"]) == 0
    summary = _summary(tmp_path, "strategy")
    products = pd.read_parquet(tmp_path / "product_positioning.parquet")
    assert summary["products"]["available"] and len(products) == summary["products"]["cells"] == 72
    assert (products["win_rate_low"] <= products["win_rate_high"]).all()
    assert summary["products"]["truth"]["win_rate_spearman"] > 0.3 and "truth" not in summary

    crm = simulate_crm(n_opportunities=1500, n_companies=250, n_reps=10, seed=8)
    write_crm_directory(crm.tables, tmp_path / "crm", format="csv")
    csv = tmp_path / "crm" / "opportunities.csv"
    pd.read_csv(csv).drop(columns=["product"]).to_csv(csv, index=False)
    assert (
        main(["strategy", "--crm", str(tmp_path / "crm"), "--out", str(tmp_path), "--set", "model.n_bootstrap=3"]) == 0
    )
    summary = _summary(tmp_path, "strategy")
    assert summary["segments"] > 0 and not summary["products"]["available"]
    assert "product" in summary["products"]["reason"]


def test_bad_settings_exit_2_naming_the_field(tmp_path: Path, run_cli) -> None:
    with pytest.raises(FieldValidationError, match=r"field 'model.bogus'"):
        main(["coaching", "--out", str(tmp_path), "--set", "model.bogus=1"])
    with pytest.raises(FieldValidationError, match=r"field 'set'"):
        main(["strategy", "--out", str(tmp_path), "--set", "no_equals_sign"])
    # Through the user's entry, `fulqrun-ml recommend pricing`, in-process (tests/conftest.py::run_cli).
    code, _, stderr = run_cli("recommend", "pricing", "--out", str(tmp_path / "x"), "--set", *SMALL,
                              "model.max_discount=1.5")  # fmt: skip
    assert code == 2
    assert "field 'max_discount'" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x" / "pricing_summary.json").exists()
