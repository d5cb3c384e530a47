"""Drift cohorts: the same drift tests on a named slice of the traffic, such as the deals created this fortnight.

Why: a shift in the market reaches a CRM through its *new* records first. The deals scored in any week are
mostly old ones (in `monitor simulate`, deals created after a drift's onset are 10-22 % of the scored pipeline in
its first two weeks), so a 10 % price change among new deals is a 0.03-sd change in the whole window, far below
what a test can see at a few thousand rows. Tested on the new deals alone, against the reference's new deals,
it is a 0.3-sd change on a few hundred rows. A cohort is a pandas `query` over the scored rows (the features the
model saw, e.g. `deal_age_days < 14`), applied to the reference and to each window alike; its reports carry the
cohort's name as their segment, so alert rules and cool-downs treat it as its own alert. A cohort whose query
names a column the frames lack (a lead model under a deal cohort) is skipped and listed with the reason; a query
that does not parse is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pandas.errors import UndefinedVariableError

from fulqrun_ml.monitoring.drift import DriftReport, MonitoringInputError, drift_by_window, drift_report

SECTION = "drift_cohorts"


@dataclass(frozen=True)
class Cohort:
    name: str
    query: str  # pandas DataFrame.query over the scored rows' feature columns

    def select(self, frame: pd.DataFrame, which: str) -> pd.DataFrame:
        """The cohort's rows of `frame`; a query that does not run names the config field and the frame."""
        try:
            return frame.query(self.query)
        except UndefinedVariableError:
            raise
        except Exception as exc:  # pandas raises many types (UndefinedVariableError, SyntaxError, TypeError)
            raise MonitoringInputError(
                f"{SECTION}.{self.name}.query", f"{self.query!r} does not run on the {which} rows: {exc}"
            ) from exc


def cohorts_from_config(config: Mapping[str, Any]) -> list[Cohort]:
    """The `drift_cohorts:` section (a list of {name, query}; absent = none), each field checked."""
    raw = config.get(SECTION) or []
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise MonitoringInputError(SECTION, "must be a list of {name, query}")
    cohorts, names = [], set()
    for i, item in enumerate(raw):
        where = f"{SECTION}[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"name", "query"}:
            raise MonitoringInputError(where, "must be a mapping with exactly `name` and `query`")
        name, query = str(item["name"]), str(item["query"])
        if not name or name == "all" or name in names:
            raise MonitoringInputError(f"{where}.name", f"{name!r} is empty, 'all' or a duplicate")
        names.add(name)
        cohorts.append(Cohort(name, query))
    return cohorts


@dataclass
class CohortDrift:
    reports: list[DriftReport]
    skipped: list[dict[str, str]]  # {name, reason}: cohorts whose query names a column these frames lack


def cohort_reports(
    cohorts: Sequence[Cohort],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    time_column: str | None = None,
    frequency: str = "W-SUN",
    **drift_kwargs: Any,
) -> CohortDrift:
    """Each cohort's rows against the reference's cohort rows: one `drift_report` over `current` (no time
    column), or one per window of `frequency` (`drift_by_window`)."""
    out = CohortDrift([], [])
    for c in cohorts:
        try:
            base, rows = c.select(reference, "reference"), c.select(current, "current")
        except UndefinedVariableError as exc:
            out.skipped.append({"name": c.name, "reason": str(exc)})
            continue
        if time_column is None:
            out.reports.append(drift_report(base, rows, segment=c.name, **drift_kwargs))
        elif not rows.empty:
            out.reports += drift_by_window(base, rows, time_column, frequency, segment=c.name, **drift_kwargs)
    return out
