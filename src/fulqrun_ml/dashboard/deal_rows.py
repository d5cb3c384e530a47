"""One deal's CRM rows, read by DuckDB from the export's Parquet files: what its probability history re-scores.

Why not the whole CRM in memory: the history needs a few hundred rows (the deal, its touches and stage changes,
its rep's deals and closes, its company and rep with their history: `features.deal_features.rows_read_for`),
while loading a 1M-opportunity CRM into pandas takes minutes and several GiB before the first point is drawn.
Here DuckDB filters the Parquet files and only the matching rows become DataFrames, typed by the contract's own
dtype schema (`data.table_checks.type_schema`, `data.history.coerce_history`) as `DirectorySource` types them,
so `probability_history` on these rows equals its value on the whole CRM (tests/unit/test_dashboard_deal_rows.py).

Both layouts are read: the flat export (`<table>.parquet`) and the sharded one (`<table>/part-*.parquet`,
`data/simulator_scale.py`), where shard k of every table is one organisation's complete CRM; when every table
has as many parts as `opportunities`, only the deal's part is scanned (one organisation, not 14M touches).
Rows keep file order (file, then row), so ties in timestamps break as the loaded tables would break them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from fulqrun_ml.data.contract import OPTIONAL_COLUMN_DEFAULTS, CRMTables, empty_table
from fulqrun_ml.data.crm_duckdb import manifest_extracted_at
from fulqrun_ml.data.history import coerce_history
from fulqrun_ml.data.schemas import CRM_SCHEMAS, Kind
from fulqrun_ml.data.table_checks import type_schema
from fulqrun_ml.errors import FulqrunMLError

CLOSED = ("closed_won", "closed_lost")
TABLES = ("opportunities", "activities", "stage_history", "companies", "users", "company_history", "user_history")


def table_files(root: Path, name: str) -> list[Path]:
    """The table's Parquet files in table order; [] when the (optional) table is absent."""
    parts = sorted((root / name).glob("part-*.parquet"))
    if parts:
        return parts
    flat = root / f"{name}.parquet"
    return [flat] if flat.is_file() else []


def deal_rows(crm_dir: str | Path, opportunity_id: str, threads: int = 2) -> CRMTables:
    """The rows `probability_history` reads for one deal, as a CRMTables (the tables it does not read are empty)."""
    root = Path(crm_dir)
    try:
        extracted_at = manifest_extracted_at(root)
    except FileNotFoundError as err:
        raise FulqrunMLError(f"{err}, so no deal history can be read") from None
    files = {name: table_files(root, name) for name in TABLES}
    for name in ("opportunities", "activities", "stage_history", "companies", "users"):
        if not files[name]:
            raise FulqrunMLError(f"table '{name}' is missing from {root}: expected {name}.parquet or {name}/part-*")
    con = duckdb.connect(config={"threads": threads})
    try:
        con.execute("SET TimeZone = 'UTC'")
        found = con.execute(
            "SELECT lower(assigned_to), lower(company_id), filename FROM read_parquet(?, filename = true) "
            "WHERE lower(id) = ? LIMIT 1",
            [[str(f) for f in files["opportunities"]], str(opportunity_id).lower()],
        ).fetchone()
        if found is None:
            raise FulqrunMLError(f"deal {opportunity_id}: not in the CRM's opportunities table ({root})")
        rep, company, part_file = found
        part = [str(f) for f in files["opportunities"]].index(part_file)

        def scan(name: str, where: str, params: list) -> pd.DataFrame:
            chosen = files[name]
            if len(chosen) == len(files["opportunities"]) > 1:
                chosen = [chosen[part]]  # sharded: the deal's organisation is this part of every table
            if not chosen:
                return pd.DataFrame()
            query = (
                f"SELECT * EXCLUDE (filename, file_row_number) FROM read_parquet(?, filename = true, "
                f"file_row_number = true, union_by_name = true) WHERE {where} ORDER BY filename, file_row_number"
            )
            return con.execute(query, [[str(f) for f in chosen], *params]).df()

        opportunities = scan("opportunities", "lower(assigned_to) = ?", [rep])
        rep_deals = opportunities["id"].str.lower().tolist()
        frames = {
            "opportunities": opportunities,
            "activities": scan("activities", "lower(related_id) = ?", [str(opportunity_id).lower()]),
            "stage_history": scan(
                "stage_history",
                "lower(opportunity_id) = ? OR (list_contains(?, to_stage) AND list_contains(?, lower(opportunity_id)))",
                [str(opportunity_id).lower(), list(CLOSED), rep_deals],
            ),
            "companies": scan("companies", "lower(id) = ?", [company]),
            "users": scan("users", "lower(id) = ?", [rep]),
        }
        history = {
            "company_history": scan("company_history", "lower(company_id) = ?", [company]),
            "user_history": scan("user_history", "lower(user_id) = ?", [rep]),
        }
    finally:
        con.close()
    typed = {name: _typed(name, frame) for name, frame in frames.items()}
    typed |= {name: coerce_history(name, frame) for name, frame in history.items() if not frame.empty}
    others = {name: empty_table(name) for name in ("organizations", "contacts")}
    return CRMTables(**typed, **others, extracted_at=extracted_at)


def _typed(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with the contract's columns and dtypes, as `DirectorySource` + validation would return them."""
    contract = CRM_SCHEMAS[name]
    for column, default in OPTIONAL_COLUMN_DEFAULTS.get(name, {}).items():
        frame[column] = frame[column].fillna(default) if column in frame else default
    typed = type_schema(contract).validate(frame[list(contract.columns)].reset_index(drop=True))
    for f in contract.fields:
        if f.kind is Kind.ID:
            typed[f.name] = typed[f.name].str.lower()
    return typed
