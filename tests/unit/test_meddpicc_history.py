"""The simulated MEDDPICC history and notes: contract, latest value = the opportunities row, nothing after a
deal's end, the story's signal, determinism, and planted PII that the scrub removes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.pii import EMAIL_PATTERN, PHONE_PATTERN, scrubber_for_crm
from fulqrun_ml.data.schemas import OPTIONAL_SCHEMAS
from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.data.table_checks import check_table
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS

SMALL = {"n_opportunities": 400, "n_companies": 100, "n_reps": 6, "n_leads": 200, "seed": 5}


@pytest.fixture(scope="module")
def crm() -> SimulatedCRM:
    return simulate_crm(**SMALL)


def test_event_tables_meet_their_contract(crm):
    tables = crm.tables
    for name in ("meddpicc_events", "notes"):  # the default story writes these; lead_events/lifecycle are opt-in
        frame = tables.event_frames()[name]
        assert len(frame) > 0, name
        _, problems = check_table(OPTIONAL_SCHEMAS[name], frame, tables.extracted_at)
        assert problems == [], (name, problems[:3])
    events, notes = tables.meddpicc_events, tables.notes
    assert events["opportunity_id"].isin(tables.opportunities["id"]).all()
    assert events["changed_by"].isin(tables.users["id"]).all()
    deal_notes = notes[notes["related_type"] == "opportunity"]
    lead_notes = notes[notes["related_type"] == "lead"]
    assert deal_notes["related_id"].isin(tables.opportunities["id"]).all() and len(deal_notes) > 0
    assert lead_notes["related_id"].isin(tables.leads["id"]).all() and len(lead_notes) > 0
    assert set(notes["kind"]) == {"note", "call_summary", "email"}


def test_the_latest_write_is_the_opportunities_row(crm):
    opps = crm.tables.opportunities.set_index("id")
    latest = crm.tables.meddpicc_events.drop_duplicates(["opportunity_id", "field"], keep="last")
    for row in latest.itertuples():
        assert opps.at[row.opportunity_id, row.field] == row.text
    filled = sum(int(opps[f].notna().sum()) for f in MEDDPICC_FIELDS)
    assert len(latest) == filled  # an element never written has no events; every written one has its last value
    assert crm.tables.meddpicc_events.groupby(["opportunity_id", "field"]).size().max() > 1  # real histories


def test_nothing_is_written_after_the_deal_ends_or_before_it_starts(crm):
    tables = crm.tables
    closes = tables.stage_history[tables.stage_history["to_stage"].isin(["closed_won", "closed_lost"])]
    end = closes.set_index("opportunity_id")["changed_at"].reindex(tables.opportunities["id"])
    end = end.fillna(tables.extracted_at).set_axis(tables.opportunities["id"])
    created = tables.opportunities.set_index("id")["created_at"]
    events = tables.meddpicc_events
    assert (events["changed_at"].to_numpy() <= end.reindex(events["opportunity_id"]).to_numpy()).all()
    assert (events["changed_at"].to_numpy() >= created.reindex(events["opportunity_id"]).to_numpy()).all()
    deal_notes = tables.notes[tables.notes["related_type"] == "opportunity"]
    assert (deal_notes["created_at"].to_numpy() <= end.reindex(deal_notes["related_id"]).to_numpy()).all()
    assert (tables.notes["created_at"] <= tables.extracted_at).all()


def test_scores_and_note_tone_follow_deal_quality(crm):
    z = crm.latent.set_index("opportunity_id")["latent_quality"]
    mean_score = crm.tables.meddpicc_events.groupby("opportunity_id")["score"].mean()
    assert np.corrcoef(z.reindex(mean_score.index), mean_score.astype(float))[0, 1] > 0.4
    deal_notes = crm.tables.notes[crm.tables.notes["related_type"] == "opportunity"]
    positive = deal_notes["body"].str.contains("approved|excited|ready to sign").groupby(deal_notes["related_id"])
    share = positive.mean()
    assert np.corrcoef(z.reindex(share.index), share.astype(float))[0, 1] > 0.2


def test_same_seed_same_history_and_other_seeds_differ(crm):
    again = simulate_crm(**SMALL)
    pd.testing.assert_frame_equal(again.tables.meddpicc_events, crm.tables.meddpicc_events)
    pd.testing.assert_frame_equal(again.tables.notes, crm.tables.notes)
    other = simulate_crm(**(SMALL | {"seed": 6}))
    assert not other.tables.notes["body"].head(50).equals(crm.tables.notes["body"].head(50))


def test_notes_and_writes_carry_pii_that_the_scrub_removes(crm):
    tables: CRMTables = crm.tables
    texts = pd.concat([tables.notes["body"], tables.meddpicc_events["text"]], ignore_index=True).astype(str)
    names = tables.contacts["email"].str.split("@").str[0].str.replace(".", " ").str.title()
    assert texts.str.contains(EMAIL_PATTERN).sum() > 20
    assert texts.str.contains(PHONE_PATTERN).sum() > 20
    assert texts.str.contains("|".join(names.head(40))).sum() > 20
    scrubber = scrubber_for_crm(tables)
    clean = texts.map(scrubber.scrub)
    assert not clean.str.contains(EMAIL_PATTERN).any()
    assert not clean.str.contains(r"\+1-555-\d{4}").any()
    assert not clean.str.contains("|".join(names)).any()
    assert clean.str.contains(r"\[NAME\]").sum() > 20  # "a person is named" survives as signal
