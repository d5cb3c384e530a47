"""Versions of the CRM contract: what changed between them, which changes are safe, and renamed columns.

Why: the CRM evolves (a field is renamed, a column appears, a type widens) while models trained on an older
contract keep serving and keep being warm-started. A change is *compatible* when every export valid under the
old contract is still valid, and still means the same thing, under the new one:

- a new optional column or table (older exports load with its declared default or empty);
- a rename, through a declared alias (`COLUMN_ALIASES`): sources may still send the old name;
- a widened type (integer → number, fraction → number, money → number, category → text), a closed category
  set that grows, a required column that becomes nullable *with* a declared default.

Anything else is *breaking*: a removed column or table, a narrowed type, a category set that shrinks, a new
required column, a rename without an alias. `breaking_changes(old, new)` names each one, and warm starts and
serving refuse a model whose contract is incompatible with the running one, saying what broke.

A contract is compared by its fingerprint (`contract_fingerprint()`, plain JSON): every model version stores
the one it was trained under (metadata `contract`), and `contracts/v<N>.json` keeps each released version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.contract import HISTORY_COLUMNS, OPTIONAL_COLUMN_DEFAULTS
from fulqrun_ml.data.pharma_contract import PHARMA_SCHEMAS
from fulqrun_ml.data.schemas import CRM_SCHEMAS, OPTIONAL_SCHEMAS, Kind
from fulqrun_ml.errors import DataContractError

CONTRACT_VERSION = 8
RELEASED_DIR = Path(__file__).with_name("contracts")

# Canonical column <- names sources may still use for it. v2 accepts the names older FulQrun exports and common
# CRM exports use for the same fields.
COLUMN_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "opportunities": {"value": ("amount", "deal_value"), "assigned_to": ("owner_id",)},
    "companies": {"size": ("company_size",), "annual_revenue": ("revenue",)},
    "activities": {"type": ("activity_type",)},
    "leads": {"source": ("lead_source",)},
}
# Changes that only make a column accept more values.
WIDENINGS = {
    (Kind.INTEGER, Kind.NUMBER),
    (Kind.FRACTION, Kind.NUMBER),
    (Kind.MONEY, Kind.NUMBER),
    (Kind.CATEGORY, Kind.TEXT),
}
CHANGELOG = {
    1: "the contract of ../shared/CRM_DATA.md: nine tables, activities.direction optional",
    2: "renamed columns accepted through COLUMN_ALIASES; optional SCD history tables (company_history, "
    "user_history); fingerprints stored with every model version",
    3: "optional opportunities.competitor and opportunities.loss_reason (missing -> 'unknown'); optional "
    "opportunity_history (amount and expected close date versions: slippage)",
    4: "optional opportunities.product (missing -> 'unknown'): product x segment win rates",
    5: "optional event tables meddpicc_events (each MEDDPICC write: element, 0-10 score, text, when, by whom) and "
    "notes (notes, call summaries, emails on deals and leads)",
    6: "optional event table lead_events (a lead's site visits, content downloads, email opens and replies, form "
    "fills, with when): behavioural lead scoring",
    7: "optional tables account_states (lifecycle stage changes of customer accounts) and surveys (CSAT answers, 1-5)",
    8: "optional pharma tables (data/pharma_contract.py, all five together): territories, hcps, products, "
    "prescriptions (TRx/NRx per HCP x product x week), hcp_calls (calls and samples; rows after the extraction "
    "are the plan)",
}


def contract_fingerprint() -> dict[str, Any]:
    """The running contract as plain JSON: per table and column its kind, nullability, allowed values,
    and whether the column has a default (so its absence is tolerated)."""
    tables: dict[str, Any] = {}
    for name, table in {**CRM_SCHEMAS, **OPTIONAL_SCHEMAS, **PHARMA_SCHEMAS}.items():
        defaults = OPTIONAL_COLUMN_DEFAULTS.get(name, {})
        tables[name] = {
            f.name: {
                "kind": str(f.kind),
                "nullable": f.nullable,
                "allowed": sorted(f.allowed) if f.allowed else None,
                "default": f.name in defaults,
            }
            for f in table.fields
        }
    return {
        "version": CONTRACT_VERSION,
        "tables": tables,
        "optional_tables": sorted([*HISTORY_COLUMNS, *OPTIONAL_SCHEMAS, *PHARMA_SCHEMAS]),
        "aliases": {t: {c: list(a) for c, a in cols.items()} for t, cols in COLUMN_ALIASES.items()},
    }


def released(version: int) -> dict[str, Any]:
    """A released contract's fingerprint (`contracts/v<N>.json`)."""
    path = RELEASED_DIR / f"v{version}.json"
    if not path.is_file():
        known = sorted(p.stem for p in RELEASED_DIR.glob("v*.json"))
        raise DataContractError(f"contract version {version} is not released here (known: {known})")
    return json.loads(path.read_text())


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every change from `old` to `new` that an export valid under `old` could not survive, by table.column."""
    problems: list[str] = []
    new_aliases = new.get("aliases", {})
    for table, columns in old["tables"].items():
        if table not in new["tables"]:
            problems.append(f"table '{table}' was removed")
            continue
        current = new["tables"][table]
        renamed_from = {alias: canon for canon, names in new_aliases.get(table, {}).items() for alias in names}
        for column, before in columns.items():
            if column not in current:
                if column in renamed_from and renamed_from[column] in current:
                    continue  # renamed, and the old name is still accepted
                problems.append(f"{table}.{column} was removed (or renamed without a declared alias)")
                continue
            problems += _column_changes(f"{table}.{column}", before, current[column])
        for column, after in current.items():
            if column not in columns and not (after["nullable"] or after["default"]):
                problems.append(f"{table}.{column} is new and required: exports made under v{old['version']} lack it")
    return problems


def _column_changes(where: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    if before["kind"] != after["kind"] and (Kind(before["kind"]), Kind(after["kind"])) not in WIDENINGS:
        problems.append(f"{where} changed type {before['kind']} -> {after['kind']} (not a widening)")
    if not before["nullable"] and after["nullable"] and not after["default"]:
        problems.append(f"{where} became nullable without a default: readers that relied on a value get none")
    if before["allowed"] and after["allowed"]:
        dropped = sorted(set(before["allowed"]) - set(after["allowed"]))
        if dropped:
            problems.append(f"{where} no longer allows {dropped}")
    elif not before["allowed"] and after["allowed"]:
        problems.append(f"{where} became a closed set {after['allowed']}: older values may be rejected")
    return problems


def check_compatible(old: dict[str, Any] | None, context: str, new: dict[str, Any] | None = None) -> None:
    """Refuse (DataContractError naming every breaking change) when `old` cannot be read under `new`
    (default: the running contract). `old=None` (a version stored before fingerprints) passes."""
    if old is None:
        return
    problems = breaking_changes(old, new or contract_fingerprint())
    if problems:
        raise DataContractError(
            f"{context}: breaking change from contract v{old.get('version')} to "
            f"v{(new or {}).get('version', CONTRACT_VERSION)}: " + "; ".join(problems)
        )


def apply_aliases(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Rename alias columns to their canonical names. A frame carrying both a canonical column and one of its
    aliases is ambiguous and refused, naming both (silently preferring one could load the wrong values)."""
    renames: dict[str, str] = {}
    for canonical, aliases in COLUMN_ALIASES.get(table, {}).items():
        present = [a for a in aliases if a in frame.columns]
        if not present:
            continue
        if canonical in frame.columns or len(present) > 1:
            raise DataContractError(
                f"{table}: columns {[canonical, *present] if canonical in frame.columns else present} "
                f"all mean '{canonical}'; keep one"
            )
        renames[present[0]] = canonical
    return frame.rename(columns=renames) if renames else frame
