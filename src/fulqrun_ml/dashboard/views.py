"""Custom analytics views: a named, validated definition (metric, dimensions, filters, chart type) in a file.

Why a whitelist instead of free SQL: a shared definition file is input from other people, so a metric is a
name from METRICS (each a fixed aggregate over one warehouse table) and a dimension a name from its table's
columns; anything else is refused with the field and view named. The file is replaced atomically (temp +
rename), so a reader sees the old set of views or the new one, and the same definition renders the same
query, so a reloaded view draws identically.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fulqrun_ml.dashboard.queries import DIMENSIONS, PERIODS, Filters
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.locking import atomic_write_json

# metric -> (warehouse table, SQL aggregate); the only SQL a view can reach.
METRICS: dict[str, tuple[str, str]] = {
    "won_revenue": ("closed_monthly", "coalesce(sum(value) FILTER (WHERE status = 'won'), 0)"),
    "won_deals": ("closed_monthly", "coalesce(sum(deals) FILTER (WHERE status = 'won'), 0)"),
    "closed_deals": ("closed_monthly", "sum(deals)"),
    "win_rate": ("closed_monthly", "sum(deals) FILTER (WHERE status = 'won') / sum(deals)"),
    "avg_cycle_days": (
        "closed_monthly",
        "sum(cycle_days) FILTER (WHERE status = 'won') / sum(deals) FILTER (WHERE status = 'won')",
    ),
    "created_deals": ("funnel", "sum(created)"),
    "open_pipeline": ("open_deals", "sum(value)"),
    "open_deals": ("open_deals", "count(*)"),
    "leads": ("leads_monthly", "sum(leads)"),
}
TABLE_DIMENSIONS = {
    "closed_monthly": (*DIMENSIONS, "month", "status"),
    "funnel": (*DIMENSIONS, "month"),
    "open_deals": (*DIMENSIONS, "stage"),
    "leads_monthly": (*DIMENSIONS, "month", "source", "status"),
}
CHART_TYPES = ("bar", "line", "table", "pie")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class ViewError(FulqrunMLError):
    """A custom view definition that cannot be used; the message names the view and field."""


@dataclass(frozen=True)
class ViewDefinition:
    name: str
    metric: str
    dimensions: tuple[str, ...] = ()
    filters: dict[str, Any] = field(default_factory=dict)
    chart: str = "bar"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "dimensions": list(self.dimensions)}

    @property
    def table(self) -> str:
        return METRICS[self.metric][0]

    def query_filters(self) -> Filters:
        return Filters.from_values(self.filters)


def validate(raw: Any, where: str = "view") -> ViewDefinition:
    """A definition from JSON, or a ViewError naming the first bad field."""
    if not isinstance(raw, dict):
        raise ViewError(f"{where}: expected an object with name, metric, dimensions, filters, chart")
    name = raw.get("name")
    label = f"{where} {name!r}" if isinstance(name, str) else where
    unknown = set(raw) - {"name", "metric", "dimensions", "filters", "chart"}
    if unknown:
        raise ViewError(f"{label}: unknown field '{sorted(unknown)[0]}'")
    if not isinstance(name, str) or not NAME.match(name):
        raise ViewError(f"{label}: field 'name' must be 1-64 letters, digits, spaces, '_', '.', '-'")
    metric = raw.get("metric")
    if metric not in METRICS:
        raise ViewError(f"{label}: field 'metric' must be one of {sorted(METRICS)}, got {metric!r}")
    dims = raw.get("dimensions", [])
    if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
        raise ViewError(f"{label}: field 'dimensions' must be a list of names")
    allowed = TABLE_DIMENSIONS[METRICS[metric][0]]
    for d in dims:
        if d not in allowed:
            raise ViewError(f"{label}: field 'dimensions': {d!r} is not a dimension of {metric} ({list(allowed)})")
    if len(dims) > 2 or len(set(dims)) != len(dims):
        raise ViewError(f"{label}: field 'dimensions': at most two distinct dimensions")
    filters = raw.get("filters", {})
    if not isinstance(filters, dict):
        raise ViewError(f"{label}: field 'filters' must be an object")
    for key, value in filters.items():
        if key not in (*DIMENSIONS, "period"):
            raise ViewError(f"{label}: field 'filters': unknown filter {key!r}")
        if key == "period" and value not in PERIODS:
            raise ViewError(f"{label}: field 'filters.period' must be one of {list(PERIODS)}, got {value!r}")
        if key != "period" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ViewError(f"{label}: field 'filters.{key}' must be a list of strings")
    chart = raw.get("chart", "bar")
    if chart not in CHART_TYPES:
        raise ViewError(f"{label}: field 'chart' must be one of {list(CHART_TYPES)}, got {chart!r}")
    return ViewDefinition(name, metric, tuple(dims), dict(filters), chart)


def load_views(path: Path) -> dict[str, ViewDefinition]:
    """Every view in the file (none when it does not exist); a bad file or entry is refused, naming it."""
    if not Path(path).is_file():
        return {}
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ViewError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    entries = raw.get("views") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ViewError(f'{path}: expected {{"views": [...]}}')
    views = [validate(entry, f"{path} views[{i}]") for i, entry in enumerate(entries)]
    return {v.name: v for v in views}


def save_view(path: Path, view: ViewDefinition) -> None:
    """Add or replace one view; the file is rewritten atomically."""
    views = load_views(path)
    views[view.name] = validate(view.to_json())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(path), {"views": [v.to_json() for v in views.values()]})
