"""The lead intent story (`simulate_crm(lead_events=True)`, data/simulator_lead_events.py): each mechanism measured on
the generated events against the latent truth, the default CRM untouched, and the optional `lead_events` table
through CSV / Parquet exports and validation (bad rows named)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data import simulator_lead_events as story
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.data.validation import CRMValidationError, check_contract, validate_crm

SIZE = {"n_opportunities": 300, "n_companies": 80, "n_reps": 6, "days": 400, "seed": 4}


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(**SIZE, n_leads=2500, lead_events=True)


@pytest.fixture(scope="module")
def events(crm) -> pd.DataFrame:
    """Lead events with their lead's latents, creation and the share u of the lead's observed life elapsed."""
    leads = crm.tables.leads.set_index("id")
    frame = crm.tables.lead_events.merge(crm.lead_latent, on="lead_id")
    created = leads["created_at"].reindex(frame["lead_id"]).to_numpy()
    return frame.assign(age_days=(frame["occurred_at"].to_numpy() - created) / pd.Timedelta(days=1))


def test_default_crm_draws_no_story():
    plain = simulate_crm(**SIZE, n_leads=200)
    explicit = simulate_crm(**SIZE, n_leads=200, lead_events=False)
    assert plain.tables.lead_events.empty and "intent_trend" not in plain.lead_latent
    for name, frame in plain.tables.frames().items():
        pd.testing.assert_frame_equal(frame, explicit.tables.table(name), obj=name)
    pd.testing.assert_frame_equal(plain.lead_latent, explicit.lead_latent)


def test_story_keeps_every_table_but_the_leads_and_moves_the_odds(crm):
    plain = simulate_crm(**SIZE, n_leads=2500)
    for name in ("opportunities", "stage_history", "companies", "users"):
        pd.testing.assert_frame_equal(plain.tables.table(name), crm.tables.table(name), obj=name)
    assert np.allclose(plain.lead_latent["latent_quality"], crm.lead_latent["latent_quality"])
    shift = crm.lead_latent["intent_logit_shift"].to_numpy()
    logit = np.log(
        crm.lead_latent["true_conversion_probability"] / (1 - crm.lead_latent["true_conversion_probability"])
    )
    plain_logit = np.log(
        plain.lead_latent["true_conversion_probability"] / (1 - plain.lead_latent["true_conversion_probability"])
    )
    assert np.allclose(logit - plain_logit, shift)
    converted = crm.lead_latent["converted"].to_numpy()
    trend = crm.lead_latent["intent_trend"].to_numpy()
    assert trend[converted].mean() > trend[~converted].mean() + 0.3  # the trend drives conversion


def test_table_meets_the_contract_and_stays_inside_each_life(crm, events):
    check_contract(crm.tables)
    assert len(events) > 10 * 2500 / 4
    assert set(events["type"]) == set(story.LEAD_EVENT_TYPES)
    assert (events["age_days"] >= 0).all()
    assert (crm.tables.lead_events["occurred_at"] <= crm.tables.extracted_at).all()
    assert crm.tables.lead_events["occurred_at"].is_monotonic_increasing


def test_trend_shows_in_the_timing_not_the_count(events, crm):
    """Rising intent puts a lead's events late in its life, decaying intent early; total counts barely differ."""
    leads = crm.tables.leads.set_index("id")
    life = ((leads["updated_at"] - leads["created_at"]) / pd.Timedelta(days=1)).where(lambda d: d > 0)
    frame = events.assign(u=events["age_days"].to_numpy() / life.reindex(events["lead_id"]).to_numpy())
    decided = leads["status"].isin(["converted", "unqualified"]).reindex(frame["lead_id"]).to_numpy()
    frame = frame[decided & np.isfinite(frame["u"]) & (frame["u"] <= 1)]
    rising, falling = frame[frame["intent_trend"] > 1], frame[frame["intent_trend"] < -1]
    assert rising["u"].mean() > falling["u"].mean() + 0.1


def test_high_intent_moments_bring_replies_and_forms(events):
    """The hand-raise before a conversion shifts the mix towards email replies and form fills."""
    high = events["type"].isin(["email_reply", "form_fill"])
    assert high[events["converted"]].mean() > high[~events["converted"]].mean() + 0.05


def test_csv_and_parquet_round_trips_keep_the_table(crm, tmp_path):
    expected = validate_crm(crm.tables).tables.lead_events
    for fmt in ("csv", "parquet"):
        write_crm_directory(crm.tables, tmp_path / fmt, format=fmt)
        loaded = DirectorySource(tmp_path / fmt).load()
        pd.testing.assert_frame_equal(loaded.lead_events, expected, check_dtype=False, obj=fmt)
        assert loaded.lead_events["occurred_at"].dtype == "datetime64[us, UTC]"
    (tmp_path / "parquet" / "lead_events.parquet").unlink()
    assert DirectorySource(tmp_path / "parquet").load().lead_events.empty  # optional: absent loads empty


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("type", "tweet", "unknown_value"),
        ("lead_id", "00000000-0000-4000-8000-000000000000", "dangling_foreign_key"),
        ("occurred_at", pd.Timestamp("2020-01-01", tz="UTC"), "before_creation"),
    ],
)
def test_bad_rows_are_named(crm, column, value, reason):
    frame = crm.tables.lead_events.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    with pytest.raises(CRMValidationError) as caught:
        validate_crm(dataclasses.replace(crm.tables, lead_events=frame))
    problems = [p for p in caught.value.report.problems if p.table == "lead_events"]
    assert [(p.row, p.field, str(p.reason)) for p in problems] == [(3, column, reason)]
    assert "lead_events" in str(caught.value) and column in str(caught.value)
