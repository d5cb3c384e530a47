"""Snapshots for the other CRM tasks keep the point-in-time rule."""

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.snapshots import deal_win_snapshots, snapshot_dates
from fulqrun_ml.data.task_snapshots import (
    account_snapshots,
    activity_sequences,
    close_timing_targets,
    lead_conversion_snapshots,
    revenue_series,
)


@pytest.fixture(scope="module")
def dates(tiny_crm):
    return snapshot_dates(tiny_crm.tables, every_days=28, warmup_days=60, horizon_days=180)


def test_lead_labels_come_after_as_of_and_match_the_final_status(tiny_crm, dates):
    leads = tiny_crm.tables.leads.set_index("id")
    snaps = lead_conversion_snapshots(tiny_crm.tables, dates, horizon_days=60)
    assert len(snaps) > 100 and 0.05 < snaps["label"].mean() < 0.6
    assert (snaps["label_time"] > snaps["as_of"]).all()
    assert (snaps["label_time"] <= snaps["as_of"] + pd.Timedelta(days=60)).all()
    positives = snaps[snaps["label"] == 1]
    assert (leads.loc[positives["lead_id"], "status"] == "converted").all()
    created = leads.loc[snaps["lead_id"], "created_at"].to_numpy()
    assert (created <= snaps["as_of"].to_numpy()).all()
    latent = tiny_crm.lead_latent.set_index("lead_id")["true_conversion_probability"]
    truth = latent.reindex(snaps["lead_id"]).to_numpy()
    assert truth[snaps["label"] == 1].mean() > truth[snaps["label"] == 0].mean() + 0.1


def test_accounts_are_customers_at_as_of_with_a_later_label(tiny_crm, dates):
    snaps = account_snapshots(tiny_crm.tables, dates, horizon_days=90)
    assert len(snaps) > 100
    np.testing.assert_array_equal(snaps["churn"], 1 - snaps["expansion"])
    assert (snaps["label_time"] > snaps["as_of"]).all()
    history = tiny_crm.tables.stage_history
    wins = history[history["to_stage"] == "closed_won"]
    company = tiny_crm.tables.opportunities.set_index("id")["company_id"]
    row = snaps[snaps["expansion"] == 1].iloc[0]
    company_wins = wins[company.reindex(wins["opportunity_id"]).to_numpy() == row["company_id"]]["changed_at"]
    assert (company_wins <= row["as_of"]).any() and (company_wins > row["as_of"]).any()


def test_revenue_series_adds_up_to_bookings_in_complete_periods(tiny_crm):
    t = tiny_crm.tables
    for by in ("organization", "rep", "region"):
        series = revenue_series(t, freq="M", by=by)
        assert (series["period_end"] < t.extracted_at).all()
        wins = t.stage_history[t.stage_history["to_stage"] == "closed_won"]
        in_range = wins[wins["changed_at"] <= series["period_end"].max()]
        booked = t.opportunities.set_index("id").loc[in_range["opportunity_id"], "value"].sum()
        assert np.isclose(series["revenue"].sum(), booked)
        per_group = series.groupby("group").size()
        assert per_group.nunique() == 1  # a complete grid: every group has every period


def test_activity_sequences_stop_at_as_of(tiny_crm, dates):
    snaps = deal_win_snapshots(tiny_crm.tables, dates, horizon_days=180).head(300)
    seq = activity_sequences(tiny_crm.tables, snaps, max_len=16)
    assert seq["event_type"].shape == (300, 16)
    assert (seq["age_days"] >= 0).all() and (seq["delta_days"] >= 0).all()
    has = seq["length"] > 0
    assert has.mean() > 0.5
    lengths = seq["length"][has]
    assert ((seq["event_type"][has] > 0).sum(axis=1) == lengths).all()  # left-padded, no holes
    # The same rows computed on a CRM cut at each as_of are identical.
    row = int(np.argmax(seq["length"]))
    as_of = snaps.iloc[row]["as_of"]
    cut = tiny_crm.tables.activities[tiny_crm.tables.activities["created_at"] <= as_of]
    import dataclasses

    again = activity_sequences(dataclasses.replace(tiny_crm.tables, activities=cut), snaps.iloc[[row]], max_len=16)
    for key in ("event_type", "delta_days", "age_days"):
        np.testing.assert_array_equal(again[key][0], seq[key][row])


def test_close_timing_target_is_positive_days(tiny_crm, dates):
    snaps = close_timing_targets(deal_win_snapshots(tiny_crm.tables, dates, horizon_days=180))
    assert (snaps["days_to_close"] > 0).all() and (snaps["days_to_close"] <= 180).all()


def test_activity_sequences_carry_direction(tiny_crm, dates):
    import dataclasses

    from fulqrun_ml.data.vocabulary import ACTIVITY_DIRECTIONS

    snaps = deal_win_snapshots(tiny_crm.tables, dates, horizon_days=180).head(200)
    seq = activity_sequences(tiny_crm.tables, snaps, max_len=8)
    assert seq["direction"].shape == (200, 8)
    assert ((seq["direction"] > 0) == (seq["event_type"] > 0)).all()  # padded exactly where events are
    inbound, outbound = ACTIVITY_DIRECTIONS.index("inbound") + 1, ACTIVITY_DIRECTIONS.index("outbound") + 1
    assert {inbound, outbound} <= set(np.unique(seq["direction"]))
    # The newest event of the first non-empty row has the direction the CRM recorded for it.
    row = int(np.argmax(seq["length"] > 0))
    entity, as_of = snaps.iloc[row]["opportunity_id"], snaps.iloc[row]["as_of"]
    acts = tiny_crm.tables.activities
    newest = acts[(acts["related_id"] == entity) & (acts["created_at"] <= as_of)].sort_values("created_at").iloc[-1]
    assert ACTIVITY_DIRECTIONS[seq["direction"][row, -1] - 1] == newest["direction"]
    # Tables without the column (an unvalidated old export) give "unknown", not an error.
    old = dataclasses.replace(tiny_crm.tables, activities=acts.drop(columns="direction"))
    unknown = activity_sequences(old, snaps, max_len=8)["direction"]
    assert set(np.unique(unknown[unknown > 0])) == {ACTIVITY_DIRECTIONS.index("unknown") + 1}
