"""Raw-record requests with MEDDPICC history and note text (`serving/text_fields.py`).

Guarantees: a record carrying a deal's MEDDPICC writes and notes gives exactly the features the training
builder (`compute_deal_meddpicc_features`) computes from the CRM at the same as_of; bad text or history gets a
FieldValidationError naming the field (too long, not UTF-8, wrong type, control character, unknown element,
score outside 0-10, unreadable time, both raw history and computed fields).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.meddpicc_deal import DEAL_WIN_MEDDPICC_FEATURES, compute_deal_meddpicc_features
from fulqrun_ml.features.meddpicc_features import MEDDPICC_HISTORY_FEATURES
from fulqrun_ml.features.meddpicc_notes import DEAL_NOTE_FEATURES
from fulqrun_ml.serving.text_fields import meddpicc_model_inputs


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=120, n_companies=30, n_reps=6, n_leads=40, seed=21).tables


def records_from_crm(tables, index: pd.DataFrame) -> tuple[list[dict], pd.DataFrame]:
    """What a client holding the deals would send: deal-win fields, creation time, every write and note."""
    expected = compute_deal_meddpicc_features(tables, index)
    created = tables.opportunities.set_index("id")["created_at"]
    events, notes = tables.meddpicc_events, tables.notes
    records = []
    for _, row in expected.iterrows():
        deal, as_of = row["opportunity_id"], row["as_of"]
        mine = events[events["opportunity_id"] == deal]
        theirs = notes[(notes["related_id"] == deal) & (notes["related_type"] == "opportunity")]
        records.append(
            {n: row[n] for n in DEAL_WIN_FEATURES.names}
            | {
                "created_at": created[deal].isoformat(),
                "as_of": as_of.isoformat(),
                "meddpicc_events": [
                    {
                        "field": e.field,
                        "score": None if pd.isna(e.score) else int(e.score),
                        "changed_at": str(e.changed_at),
                    }
                    for e in mine.itertuples()
                ],
                "notes": [{"body": n.body, "created_at": n.created_at.isoformat()} for n in theirs.itertuples()],
            }
        )
    return records, expected


def test_raw_history_gives_the_training_features(crm):
    opps = crm.opportunities
    deals = opps.loc[opps["id"].isin(crm.meddpicc_events["opportunity_id"]), "id"].head(12).to_numpy()
    # as_of inside each deal's life: some writes and notes are after it and must not count
    created = opps.set_index("id").loc[deals, "created_at"]
    index = pd.DataFrame({"opportunity_id": deals, "as_of": (created + pd.Timedelta(days=45)).to_numpy()})
    index["as_of"] = pd.to_datetime(index["as_of"], utc=True)
    records, expected = records_from_crm(crm, index)
    got = meddpicc_model_inputs(records)
    assert list(got.columns) == DEAL_WIN_MEDDPICC_FEATURES.names
    computed = [*MEDDPICC_HISTORY_FEATURES.names, *DEAL_NOTE_FEATURES.names]
    np.testing.assert_allclose(got[computed].to_numpy(float), expected[computed].to_numpy(float), rtol=0, atol=1e-9)
    assert expected["meddpicc_filled"].between(1, 8).any(), "pick an as_of where qualification is partial"


def test_computed_fields_pass_through_and_strings_are_notes_written_now(crm):
    base = BASE
    history = {n: 2.0 for n in MEDDPICC_HISTORY_FEATURES.names}
    record = base | history | {"created_at": "2025-01-01", "as_of": "2025-03-01", "notes": ["Budget approved", "ok"]}
    row = meddpicc_model_inputs([record]).iloc[0]
    assert row["meddpicc_filled"] == 2.0 and row["deal_notes"] == 2 and row["deal_notes_30d"] == 2
    assert row["deal_positive_share"] == 0.5


BASE = {n: 1.0 for n in (f.name for f in DEAL_WIN_FEATURES.numeric)} | {
    n: "x" for n in (f.name for f in DEAL_WIN_FEATURES.categorical)
}
OK_EVENTS = [{"field": "champion", "score": 5, "changed_at": "2025-02-01"}]
GOOD = BASE | {"created_at": "2025-01-01", "meddpicc_events": OK_EVENTS, "notes": ["fine"]}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"notes": ["a" * 4001]}, "records[0].notes[0]", "too long"),
        ({"notes": [b"caf\xe9"]}, "records[0].notes[0]", "UTF-8"),
        ({"notes": ["ok", "bad\udcff"]}, "records[0].notes[1]", "surrogate"),
        ({"notes": [7]}, "records[0].notes[0]", "must be a string"),
        ({"notes": [{"body": None, "created_at": "2025-02-01"}]}, "records[0].notes[0].body", "must be a string"),
        ({"notes": ["bell\x07"]}, "records[0].notes[0]", "control character"),
        ({"notes": "one note"}, "records[0].notes", "must be a list"),
        (
            {"meddpicc_events": [{"field": "budget", "score": 5, "changed_at": "2025-02-01"}]},
            "records[0].meddpicc_events[0].field",
            "must be one of",
        ),
        (
            {"meddpicc_events": [{"field": "champion", "score": 11, "changed_at": "2025-02-01"}]},
            "records[0].meddpicc_events[0].score",
            "0 to 10",
        ),
        (
            {"meddpicc_events": [{"field": "champion", "score": 5, "changed_at": "soon"}]},
            "records[0].meddpicc_events[0].changed_at",
            "not a readable time",
        ),
        ({"created_at": None}, "records[0].created_at", "ISO-8601"),
        ({"meddpicc_filled": 3.0}, "records[0].meddpicc_events", "not both"),
    ],
)
def test_bad_input_names_the_field(change, field, reason):
    with pytest.raises(FieldValidationError, match=reason) as err:
        meddpicc_model_inputs([GOOD, GOOD | change][1:])
    assert err.value.field == field


def test_a_record_without_history_or_its_fields_is_refused():
    with pytest.raises(FieldValidationError) as err:
        meddpicc_model_inputs([BASE | {"notes": []}])
    assert err.value.field == "records[0].meddpicc_filled"
