"""MEDDPICC history and note features: hand-checked values, point-in-time (both audits, and a leak planted on
purpose that they catch), training/serving parity, and exports without the optional tables."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.contract import empty_events
from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.data.snapshots import deal_win_snapshots, snapshot_dates
from fulqrun_ml.datamodules.meddpicc_builder import DealWinMeddpiccBuilder
from fulqrun_ml.features.audit import LeakageError, audit_point_in_time
from fulqrun_ml.features.deal_features import compute_deal_features
from fulqrun_ml.features.meddpicc_deal import (
    DEAL_WIN_MEDDPICC_FEATURES,
    MissingOptionalTableError,
    compute_deal_meddpicc_features,
)
from fulqrun_ml.features.meddpicc_features import MEDDPICC_HISTORY_FEATURES, compute_meddpicc_features
from fulqrun_ml.features.meddpicc_notes import LEAD_NOTE_FEATURES, compute_note_features
from fulqrun_ml.features.recompute_audit import recompute_audit, truncate_crm

KEYS = ["opportunity_id", "as_of"]


@pytest.fixture(scope="module")
def crm() -> SimulatedCRM:
    return simulate_crm(n_opportunities=400, n_companies=100, n_reps=6, n_leads=100, seed=11)


@pytest.fixture(scope="module")
def snaps(crm) -> pd.DataFrame:
    dates = snapshot_dates(crm.tables, every_days=28, warmup_days=60, horizon_days=120)
    return deal_win_snapshots(crm.tables, dates[::2], horizon_days=120)


def test_values_match_a_hand_count(crm, snaps):
    rows = snaps.sample(25, random_state=0).reset_index(drop=True)
    got = compute_meddpicc_features(crm.tables, rows[KEYS])
    events = crm.tables.meddpicc_events
    for i, row in rows.iterrows():
        seen = events[(events["opportunity_id"] == row["opportunity_id"]) & (events["changed_at"] <= row["as_of"])]
        latest = seen.drop_duplicates("field", keep="last")
        assert got.loc[i, "meddpicc_filled"] == seen["field"].nunique()
        assert got.loc[i, "meddpicc_writes"] == len(seen)
        expected_mean = latest["score"].astype(float).mean() if len(latest) else 5.0
        assert got.loc[i, "meddpicc_score_mean"] == pytest.approx(expected_mean)
        month_ago = seen[seen["changed_at"] <= row["as_of"] - pd.Timedelta(days=30)].drop_duplicates(
            "field", keep="last"
        )
        both = latest.merge(month_ago, on="field", suffixes=("", "_then"))
        change = (both["score"].astype(float) - both["score_then"].astype(float)).mean() if len(both) else 0.0
        assert got.loc[i, "meddpicc_score_change_30d"] == pytest.approx(change)
    assert got["meddpicc_filled"].nunique() > 3  # the history really varies across snapshots


def test_features_pass_both_audits(crm, snaps):
    index = snaps[KEYS]
    features, sources = compute_deal_meddpicc_features(crm.tables, index, with_sources=True)
    names = DEAL_WIN_MEDDPICC_FEATURES.names
    assert list(features.columns) == [*KEYS, *names] and len(features) == len(index)
    assert audit_point_in_time(sources, names)["violations"] == 0
    report = recompute_audit(crm.tables, features, compute_deal_meddpicc_features, "opportunity_id", names, rows=80)
    assert report.mismatches == {} and report.rows_checked > 40


def _leaky(tables, index, with_sources=False):
    """Planted leak: the MEDDPICC history read as it stands at extraction, reported under the row's as_of."""
    future = compute_meddpicc_features(tables, index.assign(as_of=tables.extracted_at), with_sources=with_sources)
    if not with_sources:
        return future.assign(as_of=index["as_of"].to_numpy())
    features, sources = future
    return features.assign(as_of=index["as_of"].to_numpy()), sources.assign(as_of=index["as_of"].to_numpy())


def test_a_leak_planted_on_purpose_fails_both_audits(crm, snaps):
    index = snaps[KEYS]
    names = MEDDPICC_HISTORY_FEATURES.names
    features, sources = _leaky(crm.tables, index, with_sources=True)
    with pytest.raises(LeakageError, match="meddpicc_filled"):
        audit_point_in_time(sources, names)
    with pytest.raises(LeakageError, match="meddpicc_writes"):
        recompute_audit(crm.tables, features, _leaky, "opportunity_id", names, rows=80)


def test_truncation_keeps_only_what_existed_at_as_of(crm):
    as_of = crm.tables.extracted_at - pd.Timedelta(days=200)
    cut = truncate_crm(crm.tables, as_of)
    assert (cut.meddpicc_events["changed_at"] <= as_of).all() and (cut.notes["created_at"] <= as_of).all()
    assert 0 < len(cut.meddpicc_events) < len(crm.tables.meddpicc_events)
    assert 0 < len(cut.notes) < len(crm.tables.notes)


def test_serving_on_the_crm_as_it_stood_matches_the_training_rows(crm, snaps):
    """Scoring (the builder's serving path, as_of = now) on the CRM cut at a past date gives the features the
    training snapshots hold for that date, computed from the full CRM."""
    as_of = snaps["as_of"].iloc[len(snaps) // 2]
    live = DealWinMeddpiccBuilder().scoring_rows(truncate_crm(crm.tables, as_of), horizon_days=0)
    training = compute_deal_meddpicc_features(crm.tables, live[KEYS])
    names = DEAL_WIN_MEDDPICC_FEATURES.names
    assert len(live) > 20
    numeric = [f.name for f in DEAL_WIN_MEDDPICC_FEATURES.numeric]
    np.testing.assert_allclose(live[numeric].to_numpy(float), training[numeric].to_numpy(float), rtol=1e-9)
    categorical = names[len(numeric) :]
    assert (live[categorical].astype(str).to_numpy() == training[categorical].astype(str).to_numpy()).all()


def test_exports_without_history_or_notes(crm, snaps):
    bare = dataclasses.replace(crm.tables, meddpicc_events=empty_events("meddpicc_events"), notes=empty_events("notes"))
    index = snaps[KEYS].head(30)
    with pytest.raises(MissingOptionalTableError, match=r"no meddpicc_events and no notes rows.*task=deal_win"):
        compute_deal_meddpicc_features(bare, index)
    assert len(compute_deal_features(bare, index)) == 30  # plain deal win is unaffected
    quiet = compute_meddpicc_features(bare, index)  # the history builder alone: nothing written yet
    assert (quiet["meddpicc_filled"] == 0).all() and (quiet["meddpicc_score_mean"] == 5.0).all()


def test_note_cues_are_point_in_time_for_leads(crm):
    leads = crm.tables.leads
    leads = leads.head(20)
    index = pd.DataFrame({"lead_id": leads["id"], "as_of": leads["created_at"] + pd.Timedelta(days=20)})
    features, sources = compute_note_features(crm.tables, index, "lead_id", with_sources=True)
    assert audit_point_in_time(sources, LEAD_NOTE_FEATURES.names)["violations"] == 0
    notes = crm.tables.notes
    first = leads.iloc[0]
    seen = notes[(notes["related_id"] == first["id"]) & (notes["created_at"] <= index.loc[0, "as_of"])]
    assert features.loc[0, "lead_notes"] == len(seen)
    assert features["lead_notes"].sum() > 0
