"""Close-timing survival rows: every deal open at as_of is a row, censored rows are censored exactly at the
horizon, events happen strictly after as_of and within it, and no feature reads anything after as_of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.snapshots import deal_win_snapshots, open_deals_as_of, snapshot_dates
from fulqrun_ml.data.survival_snapshots import close_timing_survival_snapshots
from fulqrun_ml.datamodules.survival import SurvivalSnapshotDataModule
from fulqrun_ml.datamodules.task_builders import CloseTimingSurvivalBuilder

HORIZON = 91


@pytest.fixture(scope="module")
def rows(tiny_crm) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    dates = snapshot_dates(tiny_crm.tables, every_days=56, warmup_days=60, horizon_days=HORIZON)
    return CloseTimingSurvivalBuilder().snapshots(tiny_crm.tables, dates, HORIZON), dates


def test_every_open_deal_is_a_row_and_censoring_is_exactly_at_the_horizon(tiny_crm, rows):
    frame, dates = rows
    assert len(frame) == sum(len(open_deals_as_of(tiny_crm.tables, d)) for d in dates)
    # The regression's selection (closes within the horizon) is a strict subset: the censored rows are kept.
    assert len(deal_win_snapshots(tiny_crm.tables, dates, HORIZON)) == int(frame["label"].sum()) < len(frame)
    censored, events = frame[frame["label"] == 0], frame[frame["label"] == 1]
    assert (censored["duration_days"] == HORIZON).all()
    assert (censored["label_time"] == censored["as_of"] + pd.Timedelta(days=HORIZON)).all()
    assert (events["duration_days"] > 0).all() and (events["duration_days"] <= HORIZON).all()
    assert (events["label_time"] > events["as_of"]).all()
    # The event is the deal's real close: check a few against stage history.
    closes = tiny_crm.tables.stage_history.query("to_stage in ['closed_won', 'closed_lost']")
    closed_at = closes.groupby("opportunity_id")["changed_at"].min()
    sample = events.head(50)
    assert (closed_at.reindex(sample["opportunity_id"]).to_numpy() == sample["label_time"].to_numpy()).all()
    assert censored.merge(closed_at.rename("closed_at"), left_on="opportunity_id", right_index=True, how="left").pipe(
        lambda f: (f["closed_at"].isna() | (f["closed_at"] > f["label_time"])).all()
    )


def test_no_feature_reads_data_after_as_of(tiny_crm, rows):
    frame, _ = rows
    _, sources = CloseTimingSurvivalBuilder().features(tiny_crm.tables, frame, with_sources=True)
    for feature in CloseTimingSurvivalBuilder().feature_spec.names:
        newest = pd.to_datetime(sources[feature], utc=True)
        assert not (newest > sources["as_of"]).any(), feature


def test_a_horizon_past_extraction_is_refused(tiny_crm):
    late = tiny_crm.tables.extracted_at - pd.Timedelta(days=10)
    with pytest.raises(ValueError, match="runs past extracted_at"):
        close_timing_survival_snapshots(tiny_crm.tables, [late], HORIZON)


def test_datamodule_hands_over_event_and_duration(tiny_crm):
    dm = SurvivalSnapshotDataModule(
        lambda: tiny_crm, CloseTimingSurvivalBuilder(), horizon_days=HORIZON, val_fraction=0.25, test_fraction=0.25
    )
    dm.setup("fit")
    train = dm.frames["train"]
    target = dm.target("train")
    assert target.shape == (len(train), 2) and target.dtype == np.float32
    assert np.array_equal(target[:, 0], train["label"].to_numpy(np.float32))
    assert np.allclose(target[:, 1], train["duration_days"].to_numpy())
    # Embargo by the whole horizon: no training row's horizon reaches into validation.
    assert (train["as_of"] + pd.Timedelta(days=HORIZON) < dm.frames["val"]["as_of"].min()).all()
    assert dm.leakage_audit["violations"] == 0
