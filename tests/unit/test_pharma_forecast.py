"""Pharma TRx / NRx as a user's series table, the pharma leaderboard section, and the NaN-free effects report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.analytics.pharma_effects import estimate_effects, lagged_panel
from fulqrun_ml.benchmarks.forecast_sections import SECTION_RENDERERS, render_sections
from fulqrun_ml.benchmarks.pharma_effects_report import effects_report, interval, write_json_report
from fulqrun_ml.data.pharma_series import SERIES_COLUMNS, pharma_series_frame
from fulqrun_ml.data.series_table import SeriesTableSpec, build_series_table
from fulqrun_ml.data.simulator_pharma import simulate_pharma
from fulqrun_ml.errors import DataContractError

SPEC = SeriesTableSpec(("territory", "hcp"), "week", "nrx", ("calls", "samples"), ("specialty",), ("territory", "hcp"))


@pytest.fixture(scope="module")
def sim():
    return simulate_pharma(seed=5, n_territories=2, hcps_per_territory=3, weeks=40, future_weeks=4)


@pytest.fixture(scope="module")
def long(sim):
    return pharma_series_frame(sim.tables, str(sim.meta["promoted_product"]), sim.truth)


def test_long_table_carries_targets_covariates_plan_and_truth(sim, long):
    frame, expected = long
    assert tuple(frame.columns) == SERIES_COLUMNS
    assert len(frame) == 6 * (40 + 4)
    plan = frame["nrx"].isna()
    assert plan.sum() == 6 * 4 and frame.loc[plan, "trx"].isna().all()
    assert (frame.loc[plan, "week"] > frame.loc[~plan, "week"].max()).all()  # only weeks after the extraction
    assert expected.loc[plan].isna().all().all() and expected.loc[~plan].notna().all().all()
    # calls are the recorded ones (observed weeks) and the rep plan (future weeks), row for row
    calls = sim.tables["hcp_calls"].assign(week=lambda c: c["week"].dt.strftime("%Y-%m-%d"))
    joined = frame.merge(calls, left_on=["hcp", "week"], right_on=["hcp_id", "week"], suffixes=("", "_src"))
    assert len(joined) == len(frame)
    np.testing.assert_array_equal(joined["calls"], joined["calls_src"])
    # the truth is aligned: expected NRx of the promoted product's prescription rows, in the output's order
    rx = sim.tables["prescriptions"].assign(mu=sim.truth["expected_nrx"].to_numpy())
    rx = rx[rx["product_id"] == sim.meta["promoted_product"]].assign(week=lambda r: r["week"].dt.strftime("%Y-%m-%d"))
    observed = frame[~plan].assign(mu=expected.loc[~plan, "expected_nrx"])
    merged = observed.merge(rx, left_on=["hcp", "week"], right_on=["hcp_id", "week"])
    np.testing.assert_allclose(merged["mu_x"], merged["mu_y"])
    np.testing.assert_array_equal(merged["nrx_x"], merged["nrx_y"])


def test_long_table_reads_as_a_territory_hcp_hierarchy_with_known_future_calls(long, tmp_path):
    frame, _ = long
    path = tmp_path / "rx.csv"
    frame.to_csv(path, index=False)
    table = build_series_table(pd.read_csv(path), SPEC)
    assert table.freq == "W-MON" and table.n_observed == 40 and len(table.periods) == 44
    assert table.levels.count("total") == 1 and table.levels.count("territory") == 2 and table.levels.count("hcp") == 6
    hcp_rows = [i for i, lv in enumerate(table.levels) if lv == "hcp"]
    assert table.known[hcp_rows, 40:, 0].sum() > 0  # the plan's calls reach the forecast periods
    np.testing.assert_allclose(table.values[0], np.nansum(table.values[hcp_rows], axis=0))


def test_unknown_product_is_named(sim):
    with pytest.raises(DataContractError, match="no rows for product_id nope"):
        pharma_series_frame(sim.tables, "nope")


def test_effects_report_writes_null_with_a_reason_never_nan(tmp_path):
    # pooled Poisson (sklearn, ~3 s a fit) is left out: the NaN came from the difference in means
    methods = ("fixed_effects", "difference_in_means")
    report = effects_report([0, 1], 2, methods, n_territories=1, hcps_per_territory=6, weeks=30)
    dim = report["estimates"]["promoted/difference_in_means/sample"]
    assert dim["mean"] is None and "undefined" in dim["reason"]
    assert report["estimates"]["promoted/fixed_effects/call"]["low"] is not None
    path = write_json_report(tmp_path / "pharma.json", report)
    text = path.read_text()
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_report_writer_refuses_nan_naming_the_key_and_writes_nothing(tmp_path):
    with pytest.raises(DataContractError, match=r"estimates\.x\.per_seed\[1\]"):
        write_json_report(tmp_path / "pharma.json", {"estimates": {"x": {"per_seed": [0.1, float("nan")]}}})
    assert not (tmp_path / "pharma.json").exists()
    assert interval([0.5])["low"] is None


def test_difference_in_means_has_no_sample_effect(sim):
    panel = lagged_panel(sim.tables, str(sim.meta["promoted_product"]), 2)
    assert estimate_effects(panel, 2, "difference_in_means").sample is None


def _stat(v: float) -> dict[str, float]:
    return {"mean": v, "min": v, "max": v}


def test_pharma_section_is_rendered_by_its_renderer_per_target_and_level():
    assert "pharma" in SECTION_RENDERERS
    level = {
        who: {m: _stat(w) for m in ("wape", "mase", "pinball", "coverage", "interval_width")}
        for who, w in (("model", 0.2), ("seasonal_naive", 0.4), ("auto_ets", 0.3), ("auto_arima", 0.31))
    }
    level["target_check"] = {
        "wape_model": 0.2, "best_anchor": "auto_ets", "wape_best_anchor": 0.3, "wape_reduction_vs_best_anchor": 1 / 3,
        "anchor_target_met": True, "wape_reduction_vs_seasonal_naive": 0.5, "naive_target_met": True,
        "noise_floor_wape": 0.1, "max_reachable_reduction_vs_seasonal_naive": 0.75,
        "max_reachable_reduction_vs_best_anchor": 2 / 3, "coverage_80": 0.8, "coverage_target_met": True,
    }  # fmt: skip
    run = {"train_seconds": 12.0, "epochs": 3, "params": 10, "baseline_seconds": {"anchors": 7.0},
           "onnx_us_per_row": {"batch_1": 40.0, "batch_1024": 2.0}}  # fmt: skip
    section = {
        "data": "d", "protocol": "p", "seeds": [0], "targets": ["trx", "nrx"],
        "summary": {"trx/total": level, "nrx/hcp": level},
        "runs": [{**run, "target": "trx"}, {**run, "target": "nrx", "train_seconds": 30.0}],
    }  # fmt: skip
    text = render_sections({"pharma": section})
    assert text.startswith("## pharma")
    assert "| trx | 12 | 3 | 40 | 2.0 | 7 |" in text and "| nrx | 30 |" in text
    assert "### pharma / trx/total" in text and "### pharma / nrx/hcp" in text
