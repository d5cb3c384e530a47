"""The pharma extension of the CRM contract: territories, HCPs, products, weekly prescriptions, calls and samples.

Why optional tables of their own (not new CRM_SCHEMAS entries): a CRM without a pharmaceutical BI module has none
of them, and every reader of the required tables (validation order, CDC, the online mirror) must keep working
unchanged; a pharma export is validated here, with the same typed `TableContract`s and the same per-row problem
reports (`table_checks.check_table`), plus its foreign keys and TRx >= NRx. The tables enter the contract
fingerprint as optional tables (contract v8, `contract_versions`), so exports made under v7 still load.

- territories: a sales territory (id, organization_id, name, region, created_at);
- hcps: a prescriber (healthcare professional), no name or NPI (PII), in one territory, with a specialty;
- products: a drug brand;
- prescriptions: TRx (all prescriptions) and NRx (new ones) of one HCP x product x week (the week's Monday, UTC);
- hcp_calls: rep calls and product samples left with one HCP for one product in one week; rows after the
  extraction are the rep's plan (known-future covariates of a forecast).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fulqrun_ml.data.schemas import Field, Kind, TableContract
from fulqrun_ml.data.table_checks import Problem, check_table
from fulqrun_ml.errors import DataContractError

SPECIALTIES = ("cardiology", "primary_care", "endocrinology", "internal_medicine", "other")
PROBLEM_LIMIT = 10


def _id(name: str = "id", references: str | None = None) -> Field:
    return Field(name, Kind.ID, references=references)


PHARMA_SCHEMAS: dict[str, TableContract] = {
    "territories": TableContract(
        "territories",
        (
            _id(),
            _id("organization_id"),
            Field("name", Kind.TEXT),
            Field("region", Kind.CATEGORY, nullable=True),
            Field("created_at", Kind.TIMESTAMP, event_time=True),
        ),
    ),
    "hcps": TableContract(
        "hcps",
        (
            _id(),
            _id("organization_id"),
            _id("territory_id", "territories"),
            Field("specialty", Kind.CATEGORY, allowed=SPECIALTIES),
            Field("created_at", Kind.TIMESTAMP, event_time=True),
        ),
    ),
    "products": TableContract(
        "products",
        (_id(), _id("organization_id"), Field("name", Kind.TEXT), Field("created_at", Kind.TIMESTAMP, event_time=True)),
    ),
    "prescriptions": TableContract(
        "prescriptions",
        (
            _id("hcp_id", "hcps"),
            _id("product_id", "products"),
            Field("week", Kind.TIMESTAMP, event_time=True),
            Field("trx", Kind.INTEGER, minimum=0),
            Field("nrx", Kind.INTEGER, minimum=0),
        ),
        key=("hcp_id", "product_id", "week"),
    ),
    "hcp_calls": TableContract(
        "hcp_calls",
        (
            _id("hcp_id", "hcps"),
            _id("product_id", "products"),
            Field("week", Kind.TIMESTAMP),  # may lie after the extraction: the plan
            Field("calls", Kind.INTEGER, minimum=0),
            Field("samples", Kind.INTEGER, minimum=0),
        ),
        key=("hcp_id", "product_id", "week"),
    ),
}
PHARMA_TABLES = tuple(PHARMA_SCHEMAS)


def _key_problems(name: str, frame: pd.DataFrame) -> list[str]:
    key = list(PHARMA_SCHEMAS[name].key)
    duplicated = frame.duplicated(key, keep="first").to_numpy().nonzero()[0]
    return [f"{name} row {int(r)}: duplicate key {key} = {frame.iloc[r][key].tolist()}" for r in duplicated]


def _reference_problems(typed: Mapping[str, pd.DataFrame]) -> list[str]:
    problems = []
    for name, contract in PHARMA_SCHEMAS.items():
        for f in contract.fields:
            if f.references is None or name not in typed:
                continue
            parent_ids = set(typed[f.references]["id"].dropna())
            dangling = (~typed[name][f.name].isin(parent_ids) & typed[name][f.name].notna()).to_numpy().nonzero()[0]
            problems += [
                f"{name} row {int(r)} field '{f.name}': {typed[name][f.name].iloc[r]} is not an id in {f.references}"
                for r in dangling
            ]
    return problems


def validate_pharma(tables: Mapping[str, pd.DataFrame], extracted_at: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Typed pharma tables, or a DataContractError naming table, row and field of every problem (the first
    PROBLEM_LIMIT, and how many in all). All five tables are required together: a forecast or effect estimate
    with prescriptions but no HCPs (or no calls) cannot be built."""
    missing = [name for name in PHARMA_TABLES if name not in tables]
    if missing:
        raise DataContractError(f"pharma tables missing: {missing} (all of {list(PHARMA_TABLES)} are needed)")
    typed: dict[str, pd.DataFrame] = {}
    problems: list[str] = []
    for name, contract in PHARMA_SCHEMAS.items():
        frame = tables[name].reset_index(drop=True)
        absent = [c for c in contract.columns if c not in frame.columns]
        if absent:
            problems.append(f"{name}: missing columns {absent}")
            continue
        typed[name], found = check_table(contract, frame, extracted_at)
        problems += [str(p) for p in found if isinstance(p, Problem)]
        problems += _key_problems(name, typed[name])
    if not problems:
        problems = _reference_problems(typed)
        bad = (typed["prescriptions"]["nrx"] > typed["prescriptions"]["trx"]).to_numpy().nonzero()[0]
        problems += [
            f"prescriptions row {int(r)}: nrx is larger than trx (new prescriptions are part of TRx)" for r in bad
        ]
    if problems:
        shown = "; ".join(problems[:PROBLEM_LIMIT])
        more = f" (and {len(problems) - PROBLEM_LIMIT} more)" if len(problems) > PROBLEM_LIMIT else ""
        raise DataContractError(f"pharma export breaks the contract: {shown}{more}")
    return typed


def read_pharma_tables(directory: Path, extracted_at: pd.Timestamp | None = None) -> dict[str, pd.DataFrame]:
    """Read <table>.parquet or <table>.csv for every pharma table in `directory` and validate them.
    `extracted_at` defaults to the latest prescription week plus 7 days."""
    tables: dict[str, pd.DataFrame] = {}
    for name in PHARMA_TABLES:
        parquet, csv = directory / f"{name}.parquet", directory / f"{name}.csv"
        path = parquet if parquet.is_file() else csv
        if not path.is_file():
            raise DataContractError(f"pharma table '{name}' not found: expected {parquet} or {csv}")
        try:
            tables[name] = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except (OSError, ValueError) as err:
            raise DataContractError(f"{path}: cannot be read ({err})") from err
    if extracted_at is None:
        weeks = pd.to_datetime(tables["prescriptions"]["week"], utc=True, errors="coerce")
        extracted_at = (weeks.max() if weeks.notna().any() else pd.Timestamp.now(tz="UTC")) + pd.Timedelta(days=7)
    return validate_pharma(tables, extracted_at)


def write_pharma_tables(tables: Mapping[str, pd.DataFrame], directory: Path) -> list[Path]:
    """Each table as <directory>/<table>.csv, written to a temp name and renamed (complete or absent)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PHARMA_TABLES:
        path = directory / f"{name}.csv"
        tmp = path.with_name(f".{path.name}.tmp")
        tables[name].to_csv(tmp, index=False)
        tmp.replace(path)
        paths.append(path)
    return paths
