"""Validation of the optional event tables (`schemas.OPTIONAL_SCHEMAS`: meddpicc_events, notes).

Why separate from the required tables' passes in `validation.py`: those tables must exist, these may be absent
(an export without them is valid and loads them empty). When present they get the same treatment, so a bad
row is named, never a stack trace: typed and ruled by `table_checks.check_table` (unreadable values, unknown
MEDDPICC elements or note kinds, scores outside 0-10, times after extraction), and their references checked
against the *accepted* rows of the required tables (a deal, a lead, a user), including that a MEDDPICC write
is not earlier than its deal's creation.
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.data.contract import CRMTables, empty_events
from fulqrun_ml.data.schemas import OPTIONAL_SCHEMAS, Reason, TableContract
from fulqrun_ml.data.table_checks import Problem, check_table, record_id, show_value


def check_event_tables(
    tables: CRMTables, typed: dict[str, pd.DataFrame], known: list[Problem], extracted_at: pd.Timestamp
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], list[Problem]]:
    """(raw frames, typed frames, problems) of the optional tables. `typed` are the required tables as typed by
    validation and `known` their problems: a reference to a rejected parent row is `parent_rejected`."""
    rejected: dict[str, set[int]] = {}
    for p in known:
        if p.row is not None:
            rejected.setdefault(p.table, set()).add(p.row)
    accepted = {name: frame.drop(index=sorted(rejected.get(name, ()))) for name, frame in typed.items()}
    raw_frames, typed_frames, problems = {}, {}, []
    for name, contract in OPTIONAL_SCHEMAS.items():
        frame = getattr(tables, name, None)
        if frame is None or len(frame) == 0:
            raw_frames[name] = typed_frames[name] = empty_events(name)
            continue
        frame = frame.reset_index(drop=True)
        missing = [c for c in contract.columns if c not in frame.columns]
        if missing:
            detail = f"the optional table is present, so it needs every column; it has {list(frame.columns)}"
            problems += [Problem(name, Reason.MISSING_COLUMN, c, None, None, None, detail) for c in missing]
            continue
        checked, found = check_table(contract, frame, extracted_at)
        problems += found + _reference_problems(contract, frame, checked, accepted, typed)
        raw_frames[name], typed_frames[name] = frame, checked
    return raw_frames, typed_frames, problems


def _reference_problems(
    contract: TableContract,
    raw: pd.DataFrame,
    frame: pd.DataFrame,
    accepted: dict[str, pd.DataFrame],
    typed: dict[str, pd.DataFrame],
) -> list[Problem]:
    links = [(f.name, f.references, None) for f in contract.fields if f.references is not None]
    if contract.polymorphic is not None:
        type_column, id_column, table_of = contract.polymorphic
        links += [(id_column, parent, (type_column, kind)) for kind, parent in table_of.items()]
    problems = []
    for column, parent, condition in links:
        known_ids = set(typed[parent]["id"])
        values = frame[column]
        mask = values.notna() & ~values.isin(accepted[parent]["id"])
        if condition is not None:
            mask &= frame[condition[0]] == condition[1]
        for row in mask.to_numpy().nonzero()[0]:
            exists = values.iloc[row] in known_ids
            reason = Reason.PARENT_REJECTED if exists else Reason.DANGLING_FOREIGN_KEY
            detail = f"its {parent} row was rejected" if exists else f"no such id in {parent}"
            problems.append(
                Problem(
                    contract.name,
                    reason,
                    column,
                    int(row),
                    record_id(contract, raw, row),
                    show_value(raw[column].iloc[row]),
                    detail,
                )
            )
    for time_column, fk_column, parent_time in contract.after_parent:
        parent = contract.field(fk_column).references
        assert parent is not None
        limit = accepted[parent].set_index("id")[parent_time].reindex(frame[fk_column]).to_numpy()
        early = (frame[time_column].to_numpy() < limit) & pd.notna(limit)
        detail = f"'{time_column}' is before the {parent} row's '{parent_time}'"
        for row in early.nonzero()[0]:
            problems.append(
                Problem(
                    contract.name,
                    Reason.BEFORE_CREATION,
                    time_column,
                    int(row),
                    record_id(contract, raw, row),
                    show_value(raw[time_column].iloc[row]),
                    detail,
                )
            )
    return problems
