"""Raw-record requests to the deal-win MEDDPICC model: MEDDPICC history and note text in, model inputs out.

Why: the served `deal_win_meddpicc` graph takes the computed features (`DEAL_WIN_MEDDPICC_FEATURES`), but a
client that has the deal in hand holds its MEDDPICC writes and its notes, not "mean days each element stayed
open". This module turns a record carrying them into the model's inputs with the SAME point-in-time builders
training uses (`compute_meddpicc_features`, `compute_note_features`, on a one-deal CRM made of the record), so a
request and the online store (the stream worker runs the same builders on the CRM mirror) cannot disagree.

A record is a JSON object holding the deal-win fields (as for `deal_win`), plus:
- `created_at`: when the deal was created (the history features count days from it);
- `as_of` (optional, default now): the time the features are computed at; writes and notes after it are ignored;
- `meddpicc_events`: a list of {"field": one of the nine elements, "score": 0-10 or null, "changed_at": time},
  or instead the eight history fields themselves (`meddpicc_filled`, ...), as the online store holds them;
- `notes`: a list of note texts (strings, taken as written at as_of) or of {"body": text, "created_at": time},
  or instead the note fields themselves (`deal_notes`, ...).
Bad input is the client's mistake: a FieldValidationError names the field (`records[2].notes[0]`: not a
string, not UTF-8, over 4,000 characters, a control character; an unknown element; a score outside 0-10; an
unreadable time). Note bodies are only matched against the cue lexicon here, never stored or logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import TABLE_COLUMNS, CRMTables, empty_table
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.meddpicc_deal import DEAL_WIN_MEDDPICC_FEATURES
from fulqrun_ml.features.meddpicc_features import MEDDPICC_HISTORY_FEATURES, compute_meddpicc_features
from fulqrun_ml.features.meddpicc_notes import DEAL_NOTE_FEATURES, compute_note_features
from fulqrun_ml.text.validation import validate_text

EVENTS_FIELD, NOTES_FIELD = "meddpicc_events", "notes"
MAX_ITEMS = 1000  # events or notes per record: a deal with more is an export, not a request


def _time(value: object, field: str) -> pd.Timestamp:
    """A tz-aware UTC timestamp (a naive one is taken as UTC), or a field error."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        raise FieldValidationError(field, f"must be an ISO-8601 time, got {type(value).__name__}")
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        raise FieldValidationError(field, f"not a readable time: {str(value)[:40]!r}") from None
    if pd.isna(stamp):
        raise FieldValidationError(field, "must be a time, got an empty value")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _items(record: Mapping[str, Any], name: str, where: str) -> list[Any]:
    items = record[name]
    if not isinstance(items, list):
        raise FieldValidationError(f"{where}.{name}", f"must be a list, got {type(items).__name__}")
    if len(items) > MAX_ITEMS:
        raise FieldValidationError(f"{where}.{name}", f"too many items: {len(items)}, at most {MAX_ITEMS}")
    return items


def _score(value: object, field: str) -> float:
    if value is None:
        return np.nan
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value != int(value):
        raise FieldValidationError(field, f"must be an integer from 0 to 10 or null, got {value!r}")
    if not 0 <= value <= 10:
        raise FieldValidationError(field, f"must be from 0 to 10, got {value!r}")
    return float(value)


def _events(record: Mapping[str, Any], deal: str, where: str) -> list[dict[str, Any]]:
    rows = []
    for j, event in enumerate(_items(record, EVENTS_FIELD, where)):
        at = f"{where}.{EVENTS_FIELD}[{j}]"
        if not isinstance(event, Mapping):
            raise FieldValidationError(at, f"must be an object, got {type(event).__name__}")
        element = event.get("field")
        if element not in MEDDPICC_FIELDS:
            raise FieldValidationError(f"{at}.field", f"must be one of {list(MEDDPICC_FIELDS)}, got {element!r}")
        score = _score(event.get("score"), f"{at}.score")
        rows.append({"opportunity_id": deal, "field": element, "score": score, "changed_at": _time(
            event.get("changed_at"), f"{at}.changed_at")})  # fmt: skip
    return rows


def _notes(record: Mapping[str, Any], deal: str, as_of: pd.Timestamp, where: str) -> list[dict[str, Any]]:
    rows = []
    for j, note in enumerate(_items(record, NOTES_FIELD, where)):
        at = f"{where}.{NOTES_FIELD}[{j}]"
        if isinstance(note, Mapping):
            body = validate_text(note.get("body"), f"{at}.body")
            created = _time(note.get("created_at"), f"{at}.created_at")
        else:
            body, created = validate_text(note, at), as_of
        rows.append({"related_type": "opportunity", "related_id": deal, "body": body, "created_at": created})
    return rows


def _given(record: Mapping[str, Any], names: Sequence[str], raw: str, where: str) -> None:
    """Either the raw history (`raw`) or every one of its computed fields, not both, not neither."""
    present = [n for n in names if n in record]
    if raw in record and present:
        raise FieldValidationError(f"{where}.{raw}", f"give either {raw} or the computed fields, not both {present}")
    if raw not in record and len(present) < len(names):
        missing = [n for n in names if n not in record]
        raise FieldValidationError(f"{where}.{missing[0]}", f"missing: send {raw}, or all of {list(names)}")


def _mini_crm(deals: pd.DataFrame, events: list[dict[str, Any]], notes: list[dict[str, Any]]) -> CRMTables:
    """A CRM holding only the requested deals (id, created_at) and their writes and notes."""
    tables = {name: empty_table(name) for name in TABLE_COLUMNS}
    tables["opportunities"] = deals
    event_frame = pd.DataFrame(events, columns=["opportunity_id", "field", "score", "changed_at"])
    event_frame["changed_at"] = pd.to_datetime(event_frame["changed_at"], utc=True)
    note_frame = pd.DataFrame(notes, columns=["related_type", "related_id", "body", "created_at"])
    note_frame["created_at"] = pd.to_datetime(note_frame["created_at"], utc=True)
    return CRMTables(**tables, extracted_at=pd.Timestamp.now(tz="UTC"), meddpicc_events=event_frame, notes=note_frame)


def meddpicc_model_inputs(records: Sequence[object], now: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per record with the columns `DEAL_WIN_MEDDPICC_FEATURES` names (deal-win fields passed through,
    MEDDPICC history and note fields computed from raw history where the record carries it)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    out: list[dict[str, Any]] = []
    deals, index, events, notes = [], [], [], []
    for i, record in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(record, Mapping):
            raise FieldValidationError(where, f"must be an object, got {type(record).__name__}")
        missing = [n for n in DEAL_WIN_FEATURES.names if n not in record]
        if missing:
            raise FieldValidationError(f"{where}.{missing[0]}", f"missing (deal-win fields missing: {missing})")
        _given(record, MEDDPICC_HISTORY_FEATURES.names, EVENTS_FIELD, where)
        _given(record, DEAL_NOTE_FEATURES.names, NOTES_FIELD, where)
        out.append({n: record[n] for n in (*DEAL_WIN_FEATURES.names, *MEDDPICC_HISTORY_FEATURES.names,
                                            *DEAL_NOTE_FEATURES.names) if n in record})  # fmt: skip
        if EVENTS_FIELD not in record and NOTES_FIELD not in record:
            continue
        as_of = _time(record["as_of"], f"{where}.as_of") if record.get("as_of") is not None else now
        deal = f"request-{i}"
        deals.append({"id": deal, "created_at": _time(record.get("created_at"), f"{where}.created_at")})
        index.append({"opportunity_id": deal, "as_of": as_of, "row": i})
        events += _events(record, deal, where) if EVENTS_FIELD in record else []
        notes += _notes(record, deal, as_of, where) if NOTES_FIELD in record else []
    if index:
        keyed = pd.DataFrame(index)
        crm = _mini_crm(pd.DataFrame(deals), events, notes)
        history = compute_meddpicc_features(crm, keyed[["opportunity_id", "as_of"]])
        noted = compute_note_features(crm, keyed[["opportunity_id", "as_of"]], "opportunity_id")
        for k, row in enumerate(keyed["row"]):
            if EVENTS_FIELD in records[row]:  # type: ignore[operator]
                out[row] |= history.iloc[k][MEDDPICC_HISTORY_FEATURES.names].to_dict()
            if NOTES_FIELD in records[row]:  # type: ignore[operator]
                out[row] |= noted.iloc[k][DEAL_NOTE_FEATURES.names].to_dict()
    return pd.DataFrame(out, columns=DEAL_WIN_MEDDPICC_FEATURES.names)
