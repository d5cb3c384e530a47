"""Who is being forgotten: a contact or a company, resolved against the CRM export into every id and identifier
that must disappear.

Why resolve once, up front: every store (Parquet snapshots, Redis, prediction logs, caches) holds the subject
under different shapes (a row id, a scoped `@org/id` key, an email in a note). One `Subject` lists them all, so
each store erases and re-scans against the same list, and the proof covers what the erasure removed.

What is derived from whom (the CRM's own foreign keys, never a guess from text):
- a company: the company, its contacts, its leads, its opportunities, and every activity and note related to any
  of those. Rows of other tables that carry one of these ids (stage history, MEDDPICC events, snapshots,
  prediction logs) go with them.
- a contact: the contact and the activities and notes related to the contact. A deal is the company's, not the
  contact's: an opportunity naming the contact keeps its row and loses the reference (`detach_ids`).
Identifiers (emails, phones, the name in the email's `first.last`, the company's name) are scrubbed wherever
they appear in free text of rows that stay (a note on another deal that mentions the person).

Idempotence: resolution reads each table on its own, so after a crash half-way through the CRM (leaf tables
already rewritten, `companies` not yet) a rerun still finds what is left.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq

from fulqrun_ml.data.pii import pseudonymize
from fulqrun_ml.data.tenancy import SCOPE_MARK
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS
from fulqrun_ml.errors import FulqrunMLError

Kind = Literal["contact", "company"]
TableReader = Callable[[str], pd.DataFrame]  # a CRM table by name, every column as text; absent: empty
TEXT_COLUMNS = {
    "activities": ("subject", "description"),
    "notes": ("body",),
    "opportunities": MEDDPICC_FIELDS,
}


class ErasureError(FulqrunMLError):
    """The subject cannot be resolved or a store cannot be erased; the message never holds the subject's PII."""


@dataclass(frozen=True)
class Subject:
    """Everything one erasure removes (see the module docstring)."""

    kind: Kind
    subject_id: str
    organization_id: str | None
    drop_ids: frozenset[str]
    detach_ids: frozenset[str]
    identifiers: tuple[str, ...]
    texts: tuple[str, ...]
    first_seen: pd.Timestamp | None

    @property
    def ids(self) -> frozenset[str]:
        """Every id of the subject (rows holding one exactly are removed, or the reference nulled)."""
        return self.drop_ids | self.detach_ids

    def scoped(self, ids: frozenset[str]) -> frozenset[str]:
        """`ids` plus their organisation-scoped forms (`@org/id`, as the tenant stores key them)."""
        if not self.organization_id:
            return ids
        return ids | {f"{SCOPE_MARK}{self.organization_id}/{i}" for i in ids}

    def tokens(self) -> tuple[str, ...]:
        """What a re-scan looks for inside any text: every id and identifier."""
        return tuple(sorted(self.ids | set(self.identifiers), key=len, reverse=True))

    def hashed(self) -> str:
        """The subject as it may appear in a report: a keyed hash (data/pii.py), never the id itself."""
        return pseudonymize(f"{self.kind}:{self.subject_id}")


def read_crm_table(crm_dir: Path, name: str) -> pd.DataFrame:
    """`<name>.parquet` or `<name>.csv` of the export as text columns; an absent table is empty."""
    parquet, csv = crm_dir / f"{name}.parquet", crm_dir / f"{name}.csv"
    try:
        if parquet.is_file():
            return pq.read_table(parquet).to_pandas()
        if csv.is_file():
            return pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as err:
        raise ErasureError(f"table '{name}' in {crm_dir} cannot be read: {type(err).__name__}") from None
    return pd.DataFrame()


def _ids(frame: pd.DataFrame, column: str, values: set[str]) -> pd.DataFrame:
    if frame.empty or column not in frame.columns or not values:
        return frame.iloc[0:0]
    return frame[frame[column].astype(str).isin(values)]


def _col(frame: pd.DataFrame, column: str) -> set[str]:
    return set(frame[column].dropna().astype(str)) if column in frame.columns else set()


def name_of_email(email: str) -> str | None:
    """ "ivan.moreau@x" -> "Ivan Moreau" (as data/pii.py's names_from_crm reads contacts without a name column)."""
    parts = [p for p in re.split(r"[._\-+]+", email.split("@", 1)[0]) if p.isalpha() and len(p) >= 2]
    return " ".join(p.capitalize() for p in parts) if len(parts) >= 2 else None


def _person_identifiers(contacts: pd.DataFrame) -> set[str]:
    found: set[str] = set()
    for column in ("email", "phone", "name", "full_name"):
        found |= {v for v in _col(contacts, column) if len(v) >= 5}
    found |= {n for n in (name_of_email(e) for e in _col(contacts, "email")) if n}
    return found


def _texts(tables: dict[str, pd.DataFrame], rows: dict[str, pd.DataFrame]) -> tuple[str, ...]:
    out: set[str] = set()
    for name, columns in TEXT_COLUMNS.items():
        frame = rows.get(name, pd.DataFrame())
        for column in columns:
            out |= {t for t in _col(frame, column) if t.strip()}
    return tuple(sorted(out))


def resolve_subject(
    crm_dir: Path | str,
    kind: Kind,
    subject_id: str,
    organization_id: str | None = None,
    reader: TableReader | None = None,
) -> Subject:
    """The subject's ids, identifiers and texts in the export at `crm_dir` (or, with `reader`, in the CRM it reads
    table by table: a PostgreSQL CRM; `crm_dir` then only names it in messages); an unknown subject, or one of
    another organisation than `organization_id`, is one error (the same for both: no existence oracle)."""
    if reader is None:
        crm_dir = Path(crm_dir)
        if not crm_dir.is_dir():
            raise ErasureError(f"--crm: no CRM export directory {crm_dir}")
        reader = partial(read_crm_table, crm_dir)
    names = ("companies", "contacts", "leads", "opportunities", "activities", "notes")
    tables = {name: reader(name) for name in names}
    subject_id = str(subject_id).strip()
    if kind == "company":
        company_ids = {subject_id}
        contacts = _ids(tables["contacts"], "company_id", company_ids)
        leads = _ids(tables["leads"], "company_id", company_ids)
        opportunities = _ids(tables["opportunities"], "company_id", company_ids)
        companies = _ids(tables["companies"], "id", company_ids)
        owned = company_ids | _col(contacts, "id") | _col(leads, "id") | _col(opportunities, "id")
        detach: set[str] = set()
        orgs = (
            _col(companies, "organization_id") | _col(opportunities, "organization_id") | _col(leads, "organization_id")
        )
        identifiers = _person_identifiers(contacts) | {n for n in _col(companies, "name") if len(n) >= 5}
        found = any(len(f) for f in (companies, contacts, leads, opportunities))
    elif kind == "contact":
        contacts = _ids(tables["contacts"], "id", {subject_id})
        owned, detach = set(), {subject_id}
        companies = _ids(tables["companies"], "id", _col(contacts, "company_id"))
        orgs = _col(companies, "organization_id")
        opportunities = tables["opportunities"].iloc[0:0]
        identifiers = _person_identifiers(contacts)
        found = len(contacts) > 0
    else:
        raise ErasureError(f"subject kind must be 'contact' or 'company', got {kind!r}")
    related = owned | detach
    activities = _ids(tables["activities"], "related_id", related)
    notes = _ids(tables["notes"], "related_id", related)
    found = found or len(activities) > 0 or len(notes) > 0
    org = sorted(orgs)[0] if len(orgs) == 1 else None
    if not found or (organization_id is not None and org is not None and org != organization_id):
        raise ErasureError(
            f"{kind} {pseudonymize(f'{kind}:{subject_id}')[:12]} (hashed) is not in the CRM export {crm_dir}"
            + (f" for organisation {organization_id}" if organization_id else "")
            + " (already erased, or never there)"
        )
    drop = owned | _col(activities, "id") | _col(notes, "id")
    rows = {"activities": activities, "notes": notes, "opportunities": opportunities}
    created = [
        pd.to_datetime(f["created_at"], utc=True, errors="coerce").min()
        for f in (contacts, companies, opportunities, activities, notes)
        if "created_at" in f.columns and len(f)
    ]
    created = [c for c in created if pd.notna(c)]
    return Subject(
        kind=kind,
        subject_id=subject_id,
        organization_id=org or organization_id,
        drop_ids=frozenset(drop),
        detach_ids=frozenset(detach),
        identifiers=tuple(sorted(identifiers)),
        texts=_texts(tables, rows),
        first_seen=min(created) if created else None,
    )
