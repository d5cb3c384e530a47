"""The leakage audit: every feature value must come from source rows stamped at or before its as_of.

Feature builders report, per row and feature, the newest timestamp among the rows they read
(`compute_deal_features(..., with_sources=True)`). The audit runs on every dataset build and refuses
to continue if any feature saw the future of its snapshot - the kind of bug no metric reveals.
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.errors import FulqrunMLError


class LeakageError(FulqrunMLError):
    """A feature read data stamped after its snapshot's as_of."""


def audit_point_in_time(source_times: pd.DataFrame, features: list[str], as_of_column: str = "as_of") -> dict:
    """Raise LeakageError naming each leaking feature; otherwise return a small summary for lineage."""
    as_of = source_times[as_of_column]
    leaks = {}
    for feature in features:
        newest = pd.to_datetime(source_times[feature], utc=True)
        late = newest > as_of
        if late.any():
            worst = (newest[late] - as_of[late]).max()
            leaks[feature] = f"{int(late.sum())} rows read data up to {worst} after as_of"
    if leaks:
        raise LeakageError("point-in-time violation: " + "; ".join(f"'{f}': {why}" for f, why in leaks.items()))
    return {"features_audited": len(features), "rows_audited": len(source_times), "violations": 0}
