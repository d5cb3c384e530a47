"""Tenant isolation: which organisation owns a record, and the one refusal every store gives across the boundary.

Why one module low in the layers: the online store, the similar-deal search, the prediction log, the registry and
the dashboard each answer questions "as organisation X". If each wrote its own check, one would forget. They all
call `owners`/`require_owned`/`scoped_id` from here, so the rule is written once:

- every id a tenant names is looked up in the CRM's own tables (opportunities, leads and companies carry
  `organization_id`; a contact belongs to its company's organisation);
- an id of another organisation is refused with exactly the same message as an id that does not exist, so a
  refusal never tells organisation A that organisation B has a deal with that id (no existence oracle);
- stores that key by id put the organisation into the key (`scoped_id`: `@<org>/<id>`), so a lookup made for
  A can only ever reach A's keys, even if the ownership check were skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pandas as pd

from fulqrun_ml.errors import FulqrunMLError

if TYPE_CHECKING:
    from fulqrun_ml.data.contract import CRMTables

ENTITIES = ("opportunity", "lead", "company", "contact")
SCOPE_MARK = "@"
# Organisation ids become part of Redis keys and file names: no separators, glob or control characters.
ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class TenantAccessError(FulqrunMLError):
    """An organisation asked for something that is not its own (or does not exist: the two look the same)."""


def check_org(organization_id: object) -> str:
    """The organisation id as a string, refused when empty or when it could escape a key namespace."""
    text = "" if organization_id is None else str(organization_id)
    if not ORG_ID.match(text):
        raise TenantAccessError(
            f"organization_id {text!r} is not a valid organisation id (letters, digits, '_', '.', '-'; "
            f"at most 128 characters)"
        )
    return text


def scoped_id(organization_id: str, entity_id: object) -> str:
    """The key-safe id of `entity_id` inside one organisation: `@<org>/<id>`."""
    return f"{SCOPE_MARK}{check_org(organization_id)}/{entity_id}"


def split_scoped_id(value: object) -> tuple[str | None, str]:
    """(organisation, id) of a scoped id; (None, value) for an id that carries no organisation."""
    text = str(value)
    if text.startswith(SCOPE_MARK) and "/" in text:
        org, _, entity = text[1:].partition("/")
        return org, entity
    return None, text


def owners(tables: CRMTables, entity: str) -> pd.Series:
    """id -> organization_id for one kind of entity, from the CRM itself (never from what a caller says)."""
    if entity == "opportunity":
        frame = tables.opportunities
    elif entity == "lead":
        frame = tables.leads
    elif entity == "company":
        frame = tables.companies
    elif entity == "contact":
        companies = tables.companies.set_index("id")["organization_id"]
        contacts = tables.contacts
        return pd.Series(
            contacts["company_id"].map(companies).to_numpy(), index=contacts["id"].astype(str).to_numpy(), dtype=object
        )
    else:
        raise TenantAccessError(f"entity must be one of {', '.join(ENTITIES)}, got {entity!r}")
    return pd.Series(frame["organization_id"].to_numpy(), index=frame["id"].astype(str).to_numpy(), dtype=object)


def require_owned(organization_id: str, ids: Iterable[object], owner_of: Mapping[str, object], entity: str) -> None:
    """Refuse (naming the first offending id and the caller's organisation only) unless every id is the caller's.

    `owner_of` maps id -> organisation (see `owners`). Unknown ids get the same message as foreign ones."""
    org = check_org(organization_id)
    for entity_id in ids:
        if owner_of.get(str(entity_id)) != org:
            raise TenantAccessError(f"{entity} '{entity_id}' is not found in organisation '{org}'")


def rows_of(frame: pd.DataFrame, organization_id: str, column: str = "organization_id") -> pd.DataFrame:
    """Only the rows of one organisation; a frame without the column is refused (fail closed, never all rows)."""
    org = check_org(organization_id)
    if column not in frame.columns:
        raise TenantAccessError(f"rows carry no '{column}' column: cannot tell which organisation they belong to")
    return frame[frame[column].astype(str) == org]
