"""Point-in-time correctness of every tabular task builder: features computed on the full CRM equal those
computed on the CRM as it looked at as_of (later rows gone, rewritten fields overwritten with junk)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.snapshots import snapshot_dates
from fulqrun_ml.datamodules.task_builders import (
    AccountBuilder,
    CloseTimingBuilder,
    DealWinBuilder,
    LeadConversionBuilder,
    lead_oracle_probability,
)
from fulqrun_ml.features.audit import LeakageError, audit_point_in_time
from fulqrun_ml.features.close_timing_features import days_to_quarter_end

BUILDERS = [DealWinBuilder(), CloseTimingBuilder(), LeadConversionBuilder(), AccountBuilder("expansion")]


def as_it_was(tables, as_of):
    """The CRM at as_of: rows stamped later removed; fields the CRM rewrites in place set to later values."""
    opps = tables.opportunities[tables.opportunities["created_at"] <= as_of].copy()
    opps["stage"], opps["probability"], opps["meddpicc_score"] = "closed_won", 1.0, 100
    opps["close_date"] = as_of + pd.Timedelta(days=999)
    leads = tables.leads[tables.leads["created_at"] <= as_of].copy()
    later = leads["updated_at"] > as_of
    leads.loc[later, "status"] = "contacted"  # not decided yet at as_of
    leads.loc[later, "updated_at"] = leads.loc[later, "created_at"]
    leads["score"] = 0.0
    return dataclasses.replace(
        tables,
        opportunities=opps,
        leads=leads,
        stage_history=tables.stage_history[tables.stage_history["changed_at"] <= as_of],
        activities=tables.activities[tables.activities["created_at"] <= as_of],
    )


@pytest.fixture(scope="module")
def dates(tiny_crm):
    return snapshot_dates(tiny_crm.tables, every_days=56, warmup_days=60, horizon_days=90)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.name)
def test_features_do_not_change_when_rows_after_as_of_change(builder, tiny_crm, dates):
    snaps = builder.snapshots(tiny_crm.tables, dates, 90)
    checked = 0
    for as_of in dates[1::3]:
        index = snaps[snaps["as_of"] == as_of]
        if index.empty:
            continue
        full = builder.features(tiny_crm.tables, index)
        past_only = builder.features(as_it_was(tiny_crm.tables, as_of), index)
        pd.testing.assert_frame_equal(full, past_only)
        assert list(full.columns[2:]) == builder.feature_spec.names  # declared once, computed in that order
        checked += len(index)
    assert checked > 50


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.name)
def test_every_feature_reports_its_sources_and_passes_the_audit(builder, tiny_crm, dates):
    snaps = builder.snapshots(tiny_crm.tables, dates, 90)
    _, sources = builder.features(tiny_crm.tables, snaps, with_sources=True)
    summary = audit_point_in_time(sources, builder.feature_spec.names)
    assert summary["violations"] == 0 and summary["rows_audited"] == len(snaps)
    planted = sources.copy()
    planted[builder.feature_spec.names[0]] = planted["as_of"] + pd.Timedelta(days=1)
    with pytest.raises(LeakageError, match=builder.feature_spec.names[0]):
        audit_point_in_time(planted, builder.feature_spec.names)


def test_scoring_rows_carry_every_feature(tiny_crm):
    for builder in BUILDERS:
        rows = builder.scoring_rows(tiny_crm.tables, 90)
        assert len(rows) > 0 and set(builder.feature_spec.names) <= set(rows.columns), builder.name
        assert (rows["as_of"] == tiny_crm.tables.extracted_at).all()


def test_lead_oracle_is_a_probability_that_fades_with_age():
    p = np.full(3, 0.5)
    young, old = lead_oracle_probability(p, np.zeros(3), 60), lead_oracle_probability(p, np.full(3, 120.0), 60)
    assert np.all((young > 0) & (young < 0.5)) and np.all(old < young)  # undecided for long: likely a dud
    assert lead_oracle_probability(np.ones(1), np.zeros(1), 10_000)[0] == pytest.approx(1.0)


def test_close_timing_baseline_is_learnt_on_train_only(tiny_crm, dates):
    builder = CloseTimingBuilder()
    snaps = builder.snapshots(tiny_crm.tables, dates, 90)
    frames = {"train": snaps.iloc[: len(snaps) // 2], "test": snaps.iloc[len(snaps) // 2 :].assign(label=1e6)}
    fitted = builder.fit_baselines(frames)
    medians = frames["train"].groupby("stage_index")["label"].median()
    assert fitted["test"]["stage_median_days"].max() <= medians.max()  # the test labels (1e6) never leak in


def test_days_to_quarter_end_reads_only_the_calendar():
    as_of = pd.Series(pd.to_datetime(["2024-03-31 12:00", "2024-01-01 00:00", "2024-12-01 00:00"], utc=True))
    np.testing.assert_allclose(days_to_quarter_end(as_of).to_numpy(), [0.5, 91.0, 31.0], atol=1e-3)
