"""Validate CRMTables against the typed contract, reporting every problem with table, row, id and field.

Optional columns (`contract.OPTIONAL_COLUMN_DEFAULTS`, e.g. `activities.direction`) are added first where a
source lacks them, and their empty cells filled, with the value meaning "not recorded" ("unknown").

Three passes, so each problem is reported once and with its cause:
1. structure: every table and contract column is present (a missing column cannot be quarantined row by
   row, so it always raises);
2. per table (pandera, `table_checks.py`): values that cannot be read as their type are found per row and
   blanked, then every rule runs on the typed frame (nulls, enumerations, UUID ids, duplicate ids,
   negative money, ranges, timestamps after extraction or before creation);
3. across tables: foreign keys must point at an accepted row of the parent table. A row whose parent was
   itself rejected is reported as `parent_rejected`, and this repeats until nothing changes, so the clean
   tables never hold a dangling reference.

`on_error="fail"` raises `CRMValidationError` (a DataContractError) whose message summarises the problems
and whose `.report` holds all of them. `on_error="quarantine"` writes the rejected rows, as read, with
their reasons to a directory and returns the remaining rows: nothing is dropped without a record.
Duplicate ids keep their first row and reject the later ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from fulqrun_ml.data.contract import OPTIONAL_COLUMN_DEFAULTS, TABLE_COLUMNS, CRMTables
from fulqrun_ml.data.contract_versions import apply_aliases
from fulqrun_ml.data.event_checks import check_event_tables
from fulqrun_ml.data.schemas import CRM_SCHEMAS, LOAD_ORDER, OPTIONAL_SCHEMAS, Reason, TableContract
from fulqrun_ml.data.table_checks import Problem, check_table, is_missing, record_id, show_value
from fulqrun_ml.errors import DataContractError

log = logging.getLogger(__name__)

OnError = Literal["fail", "quarantine"]
QuarantineFormat = Literal["parquet", "csv"]
SUMMARY_LIMIT = 20
REPORT_FILE = "report.json"


@dataclass
class ValidationReport:
    """All problems found, rows in and rejected per table, and where quarantined rows were written."""

    problems: list[Problem]
    rows_in: dict[str, int]
    extracted_at: pd.Timestamp
    quarantine_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def rejected_rows(self) -> dict[str, set[int]]:
        rows: dict[str, set[int]] = {name: set() for name in self.rows_in}
        for p in self.problems:
            if p.row is not None:
                rows.setdefault(p.table, set()).add(p.row)
        return rows

    @property
    def rows_rejected(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.rejected_rows().items()}

    def counts(self) -> dict[str, dict[str, int]]:
        """Rejected rows per table and reason (a row with two reasons counts under both)."""
        seen: dict[str, dict[str, set[int | None]]] = defaultdict(lambda: defaultdict(set))
        for p in self.problems:
            seen[p.table][str(p.reason)].add(p.row)
        return {table: {reason: len(rows) for reason, rows in sorted(r.items())} for table, r in sorted(seen.items())}

    def summary(self, limit: int = SUMMARY_LIMIT) -> str:
        if self.ok:
            return "CRM data meets the contract"
        rejected = {t: n for t, n in self.rows_rejected.items() if n}
        lines = [f"CRM data contract: {len(self.problems)} problem(s); rejected rows per table: {rejected or 'none'}"]
        for table, reasons in self.counts().items():
            lines.append(f"  {table}: " + ", ".join(f"{reason} x{n}" for reason, n in reasons.items()))
        lines.append(f"first {min(limit, len(self.problems))} problem(s):")
        lines.extend(f"  {p}" for p in self.problems[:limit])
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more (see the report's problems)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "extracted_at": self.extracted_at.isoformat(),
            "rows_in": self.rows_in,
            "rows_rejected": self.rows_rejected,
            "rows_kept": {t: n - self.rows_rejected.get(t, 0) for t, n in self.rows_in.items()},
            "counts": self.counts(),
            "n_problems": len(self.problems),
            "quarantine_dir": None if self.quarantine_dir is None else str(self.quarantine_dir),
            "files": [str(f) for f in self.files],
        }


class CRMValidationError(DataContractError):
    """The CRM tables break the contract; `report` holds every problem (the message, a summary)."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass(frozen=True)
class ValidationResult:
    """The accepted rows with canonical dtypes, and the report of what was rejected and why."""

    tables: CRMTables
    report: ValidationReport


def validate_crm(
    tables: CRMTables,
    on_error: OnError = "fail",
    quarantine_dir: str | Path | None = None,
    quarantine_format: QuarantineFormat = "parquet",
) -> ValidationResult:
    """Check every table of `tables` against the contract and return the typed, accepted rows.

    fail: raise CRMValidationError if anything is wrong. quarantine: write rejected rows and reasons under
    `quarantine_dir` (`<table>.rejected.<fmt>`, `problems.<fmt>`, `report.json`) and return the rest.
    Missing tables or columns raise in both modes, since no row of such a table can be trusted.
    """
    if on_error not in ("fail", "quarantine"):
        raise DataContractError(f"on_error must be 'fail' or 'quarantine', got {on_error!r}")
    if quarantine_format not in ("parquet", "csv"):
        raise DataContractError(f"quarantine_format must be 'parquet' or 'csv', got {quarantine_format!r}")
    if on_error == "quarantine" and quarantine_dir is None:
        raise DataContractError("on_error='quarantine' needs a quarantine_dir to write rejected rows to")
    extracted_at = _as_utc(tables.extracted_at)

    raw = {name: _with_optional_columns(name, _as_frame(tables, name)) for name in LOAD_ORDER}
    rows_in = {name: 0 if frame is None else len(frame) for name, frame in raw.items()}
    structural = _structure_problems(raw)
    if structural:
        raise CRMValidationError(ValidationReport(structural, rows_in, extracted_at))

    frames = {name: frame.reset_index(drop=True) for name, frame in raw.items() if frame is not None}
    typed: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for name in LOAD_ORDER:
        typed[name], found = check_table(CRM_SCHEMAS[name], frames[name], extracted_at)
        problems.extend(found)
    problems.extend(_reference_problems(typed, frames, problems))
    # The optional event tables (MEDDPICC writes, notes), checked against the accepted required rows.
    event_frames, typed_events, event_problems = check_event_tables(tables, typed, problems, extracted_at)
    problems.extend(event_problems)
    frames, typed = frames | event_frames, typed | typed_events
    rows_in |= {name: len(frame) for name, frame in event_frames.items()}
    order = [*LOAD_ORDER, *OPTIONAL_SCHEMAS]
    problems.sort(key=lambda p: (order.index(p.table), -1 if p.row is None else p.row, p.field or ""))
    report = ValidationReport(problems, rows_in, extracted_at)

    if any(p.row is None for p in problems):
        raise CRMValidationError(report)  # a whole column is unreadable: nothing to quarantine row by row
    if problems and on_error == "fail":
        raise CRMValidationError(report)

    rejected = report.rejected_rows()
    clean = {name: typed[name].drop(index=sorted(rejected[name])).reset_index(drop=True) for name in order}
    if quarantine_dir is not None and on_error == "quarantine":
        report.quarantine_dir = Path(quarantine_dir)
        report.files = _write_quarantine(report, frames, report.quarantine_dir, quarantine_format)
        if problems:
            log.warning("quarantined CRM rows (table -> reason -> rows): %s", report.counts())
    return ValidationResult(dataclasses.replace(tables, **clean, extracted_at=extracted_at), report)


def check_contract(tables: CRMTables) -> None:
    """Raise `CRMValidationError` (a DataContractError) listing every contract violation in `tables`: the full
    typed check (columns, types, enumerations, ids, foreign keys, timestamps, money) with nothing quarantined."""
    validate_crm(tables, on_error="fail")


def _as_utc(value: Any) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise DataContractError(f"extracted_at must be a timestamp, got {value!r}") from err
    if pd.isna(ts):
        raise DataContractError("extracted_at is missing (NaT): the extraction time is needed for point-in-time checks")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _as_frame(tables: CRMTables, name: str) -> pd.DataFrame | None:
    frame = getattr(tables, name, None)
    return frame if isinstance(frame, pd.DataFrame) else None


def _with_optional_columns(name: str, frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The frame with renamed columns under their canonical names and each optional column present, its empty
    cells set to the "not recorded" value, so an export made before a rename or before the column existed (or a
    CRM that leaves it blank) loads instead of failing."""
    if frame is not None:
        frame = apply_aliases(name, frame)  # renamed columns (contract_versions.COLUMN_ALIASES) load by either name
    defaults = OPTIONAL_COLUMN_DEFAULTS.get(name, {})
    if frame is None or not defaults:
        return frame
    frame = frame.copy(deep=False)
    for column, default in defaults.items():
        if column not in frame.columns:
            frame[column] = default
        elif frame[column].isna().any():
            frame[column] = frame[column].astype(object).where(frame[column].notna(), default)
    return frame


def _structure_problems(raw: dict[str, pd.DataFrame | None]) -> list[Problem]:
    problems = []
    for name in LOAD_ORDER:
        frame = raw[name]
        if frame is None:
            problems.append(Problem(name, Reason.MISSING_TABLE, None, None, None, None, "table is not a DataFrame"))
            continue
        for column in TABLE_COLUMNS[name]:
            if column not in frame.columns:
                detail = f"the contract requires it; the table has {list(frame.columns)}"
                problems.append(Problem(name, Reason.MISSING_COLUMN, column, None, None, None, detail))
        duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        for column in duplicated:
            problems.append(Problem(name, Reason.DUPLICATE_ID, column, None, None, None, "column appears twice"))
    return problems or _empty_parent_problems(raw)


def _empty_parent_problems(raw: dict[str, pd.DataFrame | None]) -> list[Problem]:
    """An empty table that other tables point at is one problem ("table is empty"), not one dangling foreign
    key per child row: 0 opportunities under 22,381 activities is an export that failed, not 22,381 bad rows."""
    referrers: dict[str, list[str]] = {}
    for name in LOAD_ORDER:
        frame = raw[name]
        if frame is None or frame.empty:
            continue
        contract = CRM_SCHEMAS[name]
        links = [(f.name, f.references, None) for f in contract.fields if f.references is not None]
        if contract.polymorphic is not None:
            type_column, id_column, table_of = contract.polymorphic
            links += [(id_column, parent, (type_column, kind)) for kind, parent in table_of.items()]
        for column, parent, condition in links:
            parent_frame = raw.get(parent)
            if parent_frame is None or not parent_frame.empty or column not in frame.columns:
                continue
            mask = frame[column].notna()
            if condition is not None and condition[0] in frame.columns:
                mask &= frame[condition[0]] == condition[1]
            if int(mask.sum()):
                referrers.setdefault(parent, []).append(f"{int(mask.sum())} {name} row(s) through '{column}'")
    return [
        Problem(
            parent,
            Reason.MISSING_TABLE,
            None,
            None,
            None,
            None,
            f"table is empty (0 rows) but {', '.join(who)} refer to it",
        )
        for parent, who in referrers.items()
    ]


def _reference_problems(
    typed: dict[str, pd.DataFrame], frames: dict[str, pd.DataFrame], known: list[Problem]
) -> list[Problem]:
    """Foreign keys and parent-time rules against accepted parent rows, repeated until nothing changes."""
    rejected: dict[str, set[int]] = {name: set() for name in typed}
    for p in known:
        if p.row is not None:
            rejected[p.table].add(p.row)
    all_ids = {name: pd.Index(frame["id"].dropna()) for name, frame in typed.items() if "id" in frame.columns}
    # A cell already reported (a malformed id, say) is not reported again as a dangling reference.
    found: dict[tuple[str, int, str], Problem | None] = {
        (p.table, p.row, p.field): None for p in known if p.row is not None and p.field is not None
    }

    def add(contract: TableContract, rows: Iterable[int], column: str, reason: Reason, detail: str) -> bool:
        changed = False
        for row in rows:
            if (contract.name, row, column) in found:
                continue
            value = show_value(frames[contract.name][column].iloc[row])
            record = record_id(contract, frames[contract.name], row)
            found[(contract.name, row, column)] = Problem(contract.name, reason, column, row, record, value, detail)
            if row not in rejected[contract.name]:
                rejected[contract.name].add(row)
                changed = True
        return changed

    def accepted(name: str) -> pd.DataFrame:
        frame = typed[name]
        return frame.drop(index=sorted(rejected[name])) if rejected[name] else frame

    def check_ids(contract: TableContract, mask: pd.Series, column: str, parent: str) -> bool:
        values = typed[contract.name][column]
        bad = mask & values.notna() & ~values.isin(accepted(parent)["id"])
        if not bad.any():
            return False
        rows = bad.to_numpy().nonzero()[0]
        exists = values.iloc[rows].isin(all_ids[parent]).to_numpy()
        changed = add(contract, rows[exists], column, Reason.PARENT_REJECTED, f"its {parent} row was rejected")
        changed |= add(contract, rows[~exists], column, Reason.DANGLING_FOREIGN_KEY, f"no such id in {parent}")
        return changed

    changed = True
    while changed:
        changed = False
        for name in LOAD_ORDER:
            contract, frame = CRM_SCHEMAS[name], typed[name]
            everything = pd.Series(True, index=frame.index)
            for f in contract.fields:
                if f.references is not None:
                    changed |= check_ids(contract, everything, f.name, f.references)
            if contract.polymorphic is not None:
                type_column, id_column, table_of = contract.polymorphic
                for related_type, parent in table_of.items():
                    changed |= check_ids(contract, frame[type_column] == related_type, id_column, parent)
            for time_column, fk_column, parent_time in contract.after_parent:
                parent = contract.field(fk_column).references
                assert parent is not None
                parent_created = accepted(parent).set_index("id")[parent_time]
                limit = parent_created.reindex(frame[fk_column]).to_numpy()
                early = (frame[time_column].to_numpy() < limit) & pd.notna(limit)
                detail = f"'{time_column}' is before the {parent} row's '{parent_time}'"
                changed |= add(contract, early.nonzero()[0], time_column, Reason.BEFORE_CREATION, detail)
    return [p for p in found.values() if p is not None]


def _write_quarantine(
    report: ValidationReport, frames: dict[str, pd.DataFrame], directory: Path, fmt: str
) -> list[Path]:
    """Write rejected rows exactly as read (as text) with their reasons, the problem list and the report."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in [*directory.glob("*.rejected.*"), *directory.glob("problems.*"), directory / REPORT_FILE]:
        stale.unlink(missing_ok=True)  # this directory describes one run only
    reasons: dict[tuple[str, int], list[str]] = defaultdict(list)
    for p in report.problems:
        if p.row is not None:
            reasons[(p.table, p.row)].append(f"{p.reason}({p.field})" if p.field else str(p.reason))
    files = []
    for name, rows in report.rejected_rows().items():
        if not rows:
            continue
        ordered = sorted(rows)
        out = frames[name].iloc[ordered].astype(object)
        out = out.apply(lambda s: s.map(lambda v: None if is_missing(v) else str(v))).astype("str")
        out.insert(0, "_row", ordered)
        out.insert(1, "_reasons", ["; ".join(reasons[(name, r)]) for r in ordered])
        files.append(_write_frame(out.reset_index(drop=True), directory / f"{name}.rejected.{fmt}", fmt))
    problems = pd.DataFrame([{**asdict(p), "reason": str(p.reason)} for p in report.problems])
    if problems.empty:
        problems = pd.DataFrame(columns=["table", "reason", "field", "row", "record_id", "value", "detail"])
    problems["row"] = problems["row"].astype("Int64")
    files.append(_write_frame(problems, directory / f"problems.{fmt}", fmt))
    report_path = directory / REPORT_FILE
    files.append(report_path)
    report.files = files
    report_path.write_text(json.dumps(report.to_dict(), indent=2))
    return files


def _write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path
