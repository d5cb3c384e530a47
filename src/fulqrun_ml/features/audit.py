"""The leakage audit: every feature value must come from source rows stamped at or before its as_of.

Feature builders report, per row and feature, the newest timestamp among the rows they read
(`compute_deal_features(..., with_sources=True)`). The audit runs on every dataset build and refuses
to continue if any feature saw the future of its snapshot - the kind of bug no metric reveals.

Rules (each one closes a hole the builders could otherwise slip through):
- every feature must be declared: a feature of the spec with no reported source column (or, when the
  builder's declarations are passed, absent from them) fails by name, instead of going unchecked;
- a missing source time (NaT) fails: "read nothing" and "forgot to report" look the same, so only a feature
  declared `READS_NOTHING_TIMESTAMPED` (a function of as_of alone, like the calendar) may report NaT or as_of;
- a source time after as_of fails.
Builders also report `<feature>__current_value` flags: rows where an attribute came from today's row because
the CRM export has no history for it (`data/history.py`). Those pass (nothing better exists) but are listed
in the summary as "current value, not point-in-time", so the gap stays visible in the run's lineage.

This audit trusts what the builders report about themselves; `recompute_audit.py` is the check that does not.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from fulqrun_ml.errors import FulqrunMLError

# The declaration for a feature computed from as_of alone (e.g. days to the quarter's end).
READS_NOTHING_TIMESTAMPED = "nothing_timestamped"
# Suffix of the per-row flag columns: True where the value is the current row's, not the one valid at as_of.
CURRENT_VALUE_SUFFIX = "__current_value"


class LeakageError(FulqrunMLError):
    """A feature read data stamped after its snapshot's as_of, or cannot show that it did not."""


def current_value_column(feature: str) -> str:
    return f"{feature}{CURRENT_VALUE_SUFFIX}"


def check_declared(features: list[str], declared: Mapping[str, str], where: str) -> None:
    """Raise LeakageError naming every feature of `features` that `declared` (feature -> source) lacks."""
    missing = [f for f in features if f not in declared]
    if missing:
        raise LeakageError(f"{where}: feature(s) {missing} declare no sources; add them to its FEATURE_SOURCE")


def audit_point_in_time(
    source_times: pd.DataFrame,
    features: list[str],
    as_of_column: str = "as_of",
    declared: Mapping[str, str] | None = None,
) -> dict:
    """Raise LeakageError naming each leaking, undeclared or unreported feature; otherwise return a summary
    for lineage (features and rows audited, violations 0, and `not_point_in_time`: feature -> flagged rows).

    `declared` (the builder's FEATURE_SOURCE) makes the check stricter: features it lacks fail, and features
    it declares READS_NOTHING_TIMESTAMPED must report NaT or exactly as_of."""
    as_of = pd.to_datetime(source_times[as_of_column], utc=True)
    leaks: dict[str, str] = {}
    current: dict[str, int] = {}
    for feature in features:
        if feature not in source_times.columns:
            leaks[feature] = "declares no sources (its builder reports no source time for it)"
            continue
        if declared is not None and feature not in declared:
            leaks[feature] = "is not declared in the builder's FEATURE_SOURCE"
            continue
        newest = pd.to_datetime(source_times[feature], utc=True)
        untimed = declared is not None and declared[feature] == READS_NOTHING_TIMESTAMPED
        problems = []
        if untimed:
            other = newest.notna() & (newest != as_of)
            if other.any():
                problems.append(f"{int(other.sum())} rows report a source time although it reads nothing time-stamped")
        elif newest.isna().any():
            problems.append(f"{int(newest.isna().sum())} rows report no source time (NaT)")
        late = newest > as_of
        if late.any():
            worst = (newest[late] - as_of[late]).max()
            problems.append(f"{int(late.sum())} rows read data up to {worst} after as_of")
        if problems:
            leaks[feature] = "; ".join(problems)
        flags = source_times.get(current_value_column(feature))
        if flags is not None and flags.fillna(False).astype(bool).any():
            current[feature] = int(flags.fillna(False).astype(bool).sum())
    if leaks:
        raise LeakageError("point-in-time violation: " + "; ".join(f"'{f}': {why}" for f, why in leaks.items()))
    return {
        "features_audited": len(features),
        "rows_audited": len(source_times),
        "violations": 0,
        "not_point_in_time": current,
    }
