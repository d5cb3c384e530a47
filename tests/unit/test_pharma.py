"""Pharma simulator, contract and call/sample effect estimation against the simulator's truth."""

from __future__ import annotations

import pandas as pd
import pytest

from fulqrun_ml.analytics.pharma_effects import estimate_effects, lagged_panel
from fulqrun_ml.data.pharma_contract import read_pharma_tables, validate_pharma, write_pharma_tables
from fulqrun_ml.data.simulator_pharma import simulate_pharma
from fulqrun_ml.errors import DataContractError

LAGS = 6


@pytest.fixture(scope="module")
def sim():
    return simulate_pharma(seed=3, n_territories=4, hcps_per_territory=25, weeks=104)


def test_simulated_tables_meet_the_contract_and_roundtrip(sim, tmp_path):
    typed = validate_pharma(sim.tables, sim.extracted_at)
    assert (typed["prescriptions"]["trx"] >= typed["prescriptions"]["nrx"]).all()
    write_pharma_tables(sim.tables, tmp_path)
    again = read_pharma_tables(tmp_path, sim.extracted_at)
    assert len(again["prescriptions"]) == len(sim.tables["prescriptions"])


def test_bad_rows_are_named(sim):
    bad = dict(sim.tables)
    rx = sim.tables["prescriptions"].astype({"week": object}).copy()
    rx.loc[5, "nrx"] = -1
    rx.loc[7, "week"] = "notadate"
    bad["prescriptions"] = rx
    with pytest.raises(DataContractError, match=r"prescriptions row 7 .*'week'.*prescriptions row 5 .*'nrx'"):
        validate_pharma(bad, sim.extracted_at)
    orphan = dict(sim.tables)
    orphan["hcps"] = sim.tables["hcps"].iloc[1:]
    with pytest.raises(DataContractError, match="is not an id in hcps"):
        validate_pharma(orphan, sim.extracted_at)
    with pytest.raises(DataContractError, match="pharma tables missing"):
        validate_pharma({k: v for k, v in sim.tables.items() if k != "hcp_calls"}, sim.extracted_at)


def test_fixed_effects_recover_the_true_call_effect_where_the_naive_comparison_is_confounded(sim):
    promoted, control = sim.tables["products"]["id"]
    truth = sim.effects.cumulative(LAGS)["call"]
    panel = lagged_panel(sim.tables, promoted, LAGS)
    fe = estimate_effects(panel, LAGS, "fixed_effects")
    naive = estimate_effects(panel, LAGS, "pooled_poisson")
    assert abs(fe.call - truth) < 0.04
    assert naive.call > truth + 0.3  # targeting of high prescribers, read as an effect
    placebo = estimate_effects(lagged_panel(sim.tables, control, LAGS, promoted), LAGS, "fixed_effects")
    assert abs(placebo.call) < 0.04


def test_default_simulation_is_seeded():
    a, b = (
        simulate_pharma(seed=1, n_territories=2, hcps_per_territory=3, weeks=20),
        simulate_pharma(seed=1, n_territories=2, hcps_per_territory=3, weeks=20),
    )
    pd.testing.assert_frame_equal(a.tables["prescriptions"], b.tables["prescriptions"])
