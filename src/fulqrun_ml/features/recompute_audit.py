"""The leakage check that does not trust the builders: recompute sampled snapshot rows from the CRM cut at as_of.

`audit.py` checks the source times the builders report about themselves; a builder that reads the future and
reports an innocent timestamp (a current row's `created_at`, say) passes it. This check needs no report at
all. For a sample of snapshot rows it rebuilds the CRM as it stood at each row's as_of - `truncate_crm`, written
here independently of the feature code - recomputes the features from that CRM alone, and compares them with
the snapshot's values. A value that moves can only have come from data the truncated CRM lacks, i.e. from after
as_of: a leak, reported by feature name.

`truncate_crm` keeps, from every table, only the rows that existed at as_of (creation / change / valid_from
times at or before it, the history and optional event tables included), sets company and user attributes to
the version valid at as_of, and resets the fields the CRM rewrites in place without history (deal stage,
probability, close date, MEDDPICC text and score; lead status, score, updated_at) to what was knowable then or
to "unknown", so a builder reading them is caught too.

Cost: one truncation and one builder call per sampled as_of date (a few dozen rows each): well under a second
on the default simulated CRM, so the dataset build runs it (`max_dates`, `rows` bound it); the skew monitor and
tests call `recompute_audit` directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import HISTORY_COLUMNS, HISTORY_OF, CRMTables
from fulqrun_ml.data.schemas import OPTIONAL_SCHEMAS
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS, PEAK_STAGE_OF, STAGE_DEFAULT_PROBABILITY
from fulqrun_ml.features.audit import LeakageError

# A feature builder: (tables, index with entity_column and as_of) -> entity_column, as_of and feature columns.
FeatureFunction = Callable[[CRMTables, pd.DataFrame], pd.DataFrame]
# The column holding each table's creation (or change) time: rows later than as_of did not exist yet.
ROW_TIME = {
    "organizations": "created_at",
    "users": "created_at",
    "companies": "created_at",
    "contacts": "created_at",
    "leads": "created_at",
    "opportunities": "created_at",
    "activities": "created_at",
    "stage_history": "changed_at",
    **dict.fromkeys(HISTORY_COLUMNS, "valid_from"),
}
# The optional event tables (MEDDPICC writes, notes) are cut at their event time, like every other table.
EVENT_TIME = {name: next(f.name for f in t.fields if f.event_time) for name, t in OPTIONAL_SCHEMAS.items()}
DECIDED_LEAD_STATUSES = ("converted", "unqualified")


def _existing(frame: pd.DataFrame, column: str, as_of: pd.Timestamp) -> pd.DataFrame:
    times = frame[column]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):  # e.g. an empty object column: parse (slow path)
        times = pd.to_datetime(times, utc=True)
    return frame[(times <= as_of).to_numpy()].reset_index(drop=True)


def _as_of_versions(current: pd.DataFrame, history: pd.DataFrame, key: str) -> pd.DataFrame:
    """`current` with its tracked fields set to each entity's newest version in (already truncated) `history`;
    entities without a version keep their row (the builders' documented fallback, flagged by them)."""
    if history.empty:
        return current
    newest = history.sort_values("valid_from", kind="stable").drop_duplicates(key, keep="last").set_index(key)
    out = current.copy()
    has = out["id"].isin(newest.index).to_numpy()
    for column in newest.columns.drop("valid_from"):
        versioned = newest[column].reindex(out["id"]).set_axis(out.index)
        out[column] = versioned.where(has, out[column])
    return out


def _opportunities_at(opportunities: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Deals with their rewritten fields as knowable at as_of: stage from the newest change (table order breaks
    ties), probability its default, updated_at that change; close date and MEDDPICC unknown."""
    out = opportunities.copy()
    last = history.sort_values("changed_at", kind="stable").drop_duplicates("opportunity_id", keep="last")
    last = last.set_index("opportunity_id").reindex(out["id"])
    stage = last["to_stage"].to_numpy(dtype=object)
    out["stage"] = stage
    out["peak_stage"] = [PEAK_STAGE_OF.get(s) if isinstance(s, str) else None for s in stage]
    out["probability"] = [STAGE_DEFAULT_PROBABILITY.get(s, np.nan) if isinstance(s, str) else np.nan for s in stage]
    out["updated_at"] = last["changed_at"].to_numpy()
    out["close_date"] = pd.NaT
    for column in MEDDPICC_FIELDS:
        out[column] = None
    out["meddpicc_score"] = np.nan
    return out


def _leads_at(leads: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Leads as knowable at as_of: a status and updated_at stamped later are unknown ('new', the creation)."""
    out = leads.copy()
    later = (pd.to_datetime(out["updated_at"], utc=True) > as_of).to_numpy()
    out["status"] = out["status"].astype(object).where(~later, "new")
    out["updated_at"] = out["updated_at"].where(~later, out["created_at"])
    out["score"] = np.nan
    return out


def truncate_crm(tables: CRMTables, as_of: pd.Timestamp) -> CRMTables:
    """The CRM as it stood at `as_of` (see the module docstring), built without any feature builder's code."""
    as_of = pd.Timestamp(as_of)
    kept = {name: _existing(tables.table(name), ROW_TIME[name], as_of) for name in tables.frames()}
    history = {name: _existing(tables.history(name), "valid_from", as_of) for name in HISTORY_COLUMNS}
    for name, (table, key) in HISTORY_OF.items():
        kept[table] = _as_of_versions(kept[table], history[name], key)
    kept["opportunities"] = _opportunities_at(kept["opportunities"], kept["stage_history"])
    kept["leads"] = _leads_at(kept["leads"], as_of)
    events = {name: _existing(frame, EVENT_TIME[name], as_of) for name, frame in tables.event_frames().items()}
    return dataclasses.replace(tables, **kept, **history, **events, extracted_at=as_of)


@dataclass
class RecomputeReport:
    """What the check compared, and per feature the rows whose value moved (with one example each)."""

    rows_checked: int
    as_of_dates: int
    mismatches: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "recomputed_rows": self.rows_checked,
            "recomputed_as_of_dates": self.as_of_dates,
            "recompute_mismatches": dict(self.mismatches),
        }


def sample_rows(snapshots: pd.DataFrame, rows: int, max_dates: int, seed: int) -> pd.DataFrame:
    """Up to `rows` snapshot rows spread over up to `max_dates` as_of dates (evenly spaced, first and last
    included), the same draw for the same seed."""
    dates = np.sort(snapshots["as_of"].unique())
    if len(dates) == 0:
        return snapshots.iloc[:0]
    chosen = dates[np.unique(np.linspace(0, len(dates) - 1, min(max_dates, len(dates))).round().astype(int))]
    per_date = max(1, rows // len(chosen))
    parts = [
        group.sample(n=min(per_date, len(group)), random_state=seed)
        for _, group in snapshots[snapshots["as_of"].isin(chosen)].groupby("as_of", sort=True)
    ]
    return pd.concat(parts, ignore_index=True)


def _differs(expected: pd.Series, got: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(expected) and pd.api.types.is_numeric_dtype(got):
        a, b = expected.to_numpy(dtype=np.float64), got.to_numpy(dtype=np.float64)
        return ~np.isclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
    return expected.astype(str).to_numpy() != got.astype(str).to_numpy()


def recompute_audit(
    tables: CRMTables,
    snapshot_features: pd.DataFrame,
    compute: FeatureFunction,
    entity_column: str,
    features: list[str],
    rows: int = 60,
    max_dates: int = 4,
    seed: int = 0,
    raise_on_leak: bool = True,
) -> RecomputeReport:
    """Recompute a sample of `snapshot_features` (entity_column, as_of, `features`; computed on the full CRM)
    with `compute` on the CRM truncated at each row's as_of, and compare. Raises LeakageError naming each
    feature whose value moved (unless `raise_on_leak` is False: then the report says so)."""
    missing = [c for c in (entity_column, "as_of", *features) if c not in snapshot_features.columns]
    if missing:
        raise KeyError(f"snapshot_features lacks the column(s) {missing} needed for the recompute check")
    sample = sample_rows(snapshot_features, rows, max_dates, seed)
    report = RecomputeReport(rows_checked=len(sample), as_of_dates=int(sample["as_of"].nunique()))
    for as_of, expected in sample.groupby("as_of", sort=True):
        index = expected[[entity_column, "as_of"]].reset_index(drop=True)
        try:
            got = compute(truncate_crm(tables, pd.Timestamp(as_of)), index)
        except KeyError as err:  # e.g. the entity's own row was created after as_of
            raise LeakageError(
                f"recomputing {len(index)} snapshot rows at {pd.Timestamp(as_of).isoformat()} from the CRM cut at "
                f"as_of failed ({err!r}): a snapshot row depends on a row that did not exist yet"
            ) from err
        got = index.merge(got, on=[entity_column, "as_of"], how="left")
        expected = expected.reset_index(drop=True)
        for feature in features:
            moved = _differs(expected[feature], got[feature])
            if moved.any():
                report.mismatches[feature] = report.mismatches.get(feature, 0) + int(moved.sum())
                row = int(np.flatnonzero(moved)[0])
                report.examples.setdefault(
                    feature,
                    f"{entity_column} {expected.loc[row, entity_column]} at {pd.Timestamp(as_of).isoformat()}: "
                    f"snapshot {expected.loc[row, feature]!r}, recomputed from the CRM cut at as_of "
                    f"{got.loc[row, feature]!r}",
                )
    if report.mismatches and raise_on_leak:
        raise LeakageError(
            "features differ when recomputed from the CRM truncated at as_of (they read later data): "
            + "; ".join(
                f"'{f}': {n} of {report.rows_checked} rows ({report.examples[f]})" for f, n in report.mismatches.items()
            )
        )
    return report
