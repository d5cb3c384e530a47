"""The embedding cache: vectors of the subject's texts, found by recomputing their cache keys.

Why by key: the cache (text/cache.py) stores one `.npy` vector per SHA-256 of the *scrubbed* text and nothing
else, so no scan of its files can tell whose text a vector came from. The erasure knows the subject's raw texts
(notes, activity subjects and descriptions, MEDDPICC answers: `Subject.texts`), scrubs them as the encoder did
(with the names the CRM knows, as the note-embedding view does, and without, as the similar-deal search does)
and deletes those keys. The re-scan counts the same keys.

The similar-deal search (search/similar.py) caches vectors of composite texts: a deal profile at a date (its
last notes, then stage, size and industry; search/deal_profiles.py). A profile with notes reads differently at
each note, each stage change and each change of the company's attributes, and is constant in between, so
`profile_keys` rebuilds, with the search's own `profiles`, every note-bearing profile of the subject's deals at
every one of those times (and at the extraction time: the default question) and deletes those keys. Profiles
without notes are a template of stage, segment and activity counts, shared by many deals and holding nothing
of the subject's; they are left. The vector index itself (search/index.py) is built in memory from the CRM at
start and is never persisted, so it holds the subject only until the next start after the CRM is erased.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.pii import PIIScrubber, names_from_crm
from fulqrun_ml.erasure.subject import Subject, TableReader, read_crm_table
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.search.deal_profiles import OPEN_STAGES, profiles, stage_at
from fulqrun_ml.text.cache import text_key
from fulqrun_ml.text.model import MODEL_TAG
from fulqrun_ml.text.validation import MAX_TEXT_CHARS, validate_text


def crm_scrubber(crm_dir: Path | None, reader: TableReader | None = None) -> PIIScrubber:
    """The scrubber the note-embedding view builds for this CRM (data/pii.py: names_from_crm)."""
    read = reader or partial(read_crm_table, Path(str(crm_dir)))
    tables = SimpleNamespace(contacts=read("contacts"), users=read("users"))
    return PIIScrubber(names_from_crm(tables))  # type: ignore[arg-type]


def subject_keys(subject: Subject, scrubbers: list[PIIScrubber]) -> set[str]:
    """Cache keys of the subject's texts under every scrubber the encoders use."""
    return _keys(list(subject.texts), scrubbers)


TEXT_DTYPE = pd.StringDtype(na_value=np.nan)
PROFILE_TIMES = {
    "opportunities": ("created_at", "close_date"),
    "stage_history": ("changed_at",),
    "notes": ("created_at",),
    "activities": ("created_at",),
    "company_history": ("valid_from",),
}


def profile_tables(read: TableReader, subject: Subject, extracted_at: pd.Timestamp) -> CRMTables:
    """Only the rows a profile of the subject's deals reads (a profile joins per deal and per company), with
    their times typed. Why not the whole CRM, validated: at 10k deals that load cost ~5 s of a ~5 s forget."""
    opps = read("opportunities")
    if "id" in opps.columns:
        opps = opps[opps["id"].astype(str).isin(subject.drop_ids)]
    deals = set(opps["id"].astype(str)) if "id" in opps.columns else set()
    companies = set(opps["company_id"].astype(str)) if "company_id" in opps.columns else set()

    def rows(name: str, column: str, values: set[str]) -> pd.DataFrame:
        frame = read(name)
        return frame[frame[column].astype(str).isin(values)].copy() if column in frame.columns else frame.iloc[0:0]

    frames = {
        "opportunities": opps.copy(),
        "stage_history": rows("stage_history", "opportunity_id", deals),
        "notes": rows("notes", "related_id", deals),
        "activities": rows("activities", "related_id", deals),
        "companies": rows("companies", "id", companies),
        "company_history": rows("company_history", "company_id", companies),
    }
    for name, columns in PROFILE_TIMES.items():
        for column in (c for c in columns if c in frames[name].columns):
            values = frames[name][column]  # Parquet keeps times typed; PostgreSQL text is ISO 8601 of any precision
            typed = pd.api.types.is_datetime64_any_dtype(values)
            frames[name][column] = pd.to_datetime(values, utc=True, format=None if typed else "ISO8601")
    for frame in frames.values():  # text as pandas' default str dtype, as profiles() builds its own id columns
        for column in frame.columns:
            if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, str) or pd.isna(v)).all():
                frame[column] = frame[column].astype(TEXT_DTYPE)
    empty = pd.DataFrame()
    return CRMTables(organizations=empty, users=empty, contacts=empty, extracted_at=extracted_at, **frames)


def profile_keys(tables: CRMTables, subject: Subject, scrubbers: list[PIIScrubber]) -> set[str]:
    """Cache keys of the similar-deal search's note-bearing profiles of the subject's deals (module docstring)."""
    opps = tables.opportunities
    deals = set(opps["id"].astype(str)) & set(subject.drop_ids) if "id" in opps.columns else set()
    if not deals or tables.stage_history.empty:
        return set()
    history = tables.stage_history[tables.stage_history["opportunity_id"].astype(str).isin(deals)]
    times = [(str(d), pd.Timestamp(t)) for d, t in zip(history["opportunity_id"], history["changed_at"], strict=True)]
    notes = getattr(tables, "notes", None)
    if isinstance(notes, pd.DataFrame) and {"related_id", "created_at"} <= set(notes.columns):
        mine = notes[notes["related_id"].astype(str).isin(deals)]
        times += [(str(d), pd.Timestamp(t)) for d, t in zip(mine["related_id"], mine["created_at"], strict=True)]
    companies = opps[opps["id"].astype(str).isin(deals)].set_index("company_id")["id"].astype(str)
    changes = tables.company_history
    if {"company_id", "valid_from"} <= set(changes.columns):  # the profile's size and industry change then
        changes = changes[changes["company_id"].isin(companies.index)]
        for company, valid_from in zip(changes["company_id"], changes["valid_from"], strict=True):
            times += [(d, pd.Timestamp(valid_from)) for d in companies.loc[[company]]]
    times += [(d, pd.Timestamp(tables.extracted_at)) for d in deals]
    rows = []
    for deal, as_of in set(times):
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
        stage = stage_at(tables, deal, as_of)
        if stage in OPEN_STAGES:
            rows.append({"opportunity_id": deal, "stage": stage, "as_of": as_of})
    if not rows:
        return set()
    built = profiles(tables, pd.DataFrame(rows))
    return _keys([t for t, n in zip(built["text"], built["notes"], strict=True) if n], scrubbers)


def _keys(texts: list[str], scrubbers: list[PIIScrubber]) -> set[str]:
    keys: set[str] = set()
    for text in texts:
        try:
            clean = validate_text(text, "text", MAX_TEXT_CHARS)
        except FieldValidationError:
            continue  # the encoder refuses such a text, so it was never cached
        keys |= {text_key(scrubber.scrub(clean), MODEL_TAG) for scrubber in scrubbers}
    return keys


def has_vectors(root: Path | None) -> bool:
    """Whether the cache holds any vector of the current model (else there is nothing to look up)."""
    return root is not None and any((Path(root) / MODEL_TAG).glob("*/*.npy"))


class EmbeddingCacheStore:
    """`<root>/<model tag>/<2 hex>/<key>.npy` (text/cache.py)."""

    name = "embedding_cache"

    def __init__(self, root: Path, keys: set[str]) -> None:
        self.root = Path(root) / MODEL_TAG
        self.keys = keys

    def _present(self) -> list[Path]:
        paths = (self.root / key[:2] / f"{key}.npy" for key in self.keys)
        return [p for p in paths if p.is_file()]

    def count(self) -> dict[str, int]:
        present = len(self._present())
        return {"vectors": present} if present else {}

    def erase(self) -> dict[str, int]:
        present = self._present()
        for path in present:
            path.unlink(missing_ok=True)
        return {"vectors_deleted": len(present)}
