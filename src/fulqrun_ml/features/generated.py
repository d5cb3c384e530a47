"""Automated feature generation: windowed activity aggregates derived from the contract's relations, in SQL.

Why generated: a CRM's activity log supports hundreds of plausible aggregates (every activity type and
direction, over several windows, for the entity itself, its company and its rep). Writing each one by hand
is how the hand-declared sets stay small. Here they are enumerated from the contract's vocabulary
(`ACTIVITY_TYPES`, `ACTIVITY_DIRECTIONS`, the relations opportunity/lead → company and → assigned rep) and
computed by one DuckDB query per relation, so 200 features cost one scan of the activity table.

Why SQL and not pandas: the same text runs on DuckDB over Parquet (the offline store, any scale) and over
the streaming mirror's frames (DuckDB reads pandas frames in place), so there is one definition of each
generated feature, like `FeatureSpec` for the hand-declared ones.

Point in time by construction: every aggregate joins activities with `created_at <= as_of` only, and each
relation also returns the newest source timestamp it read, which the leakage audit checks
(`generated_source_times`); a test truncates the CRM at as_of and proves the values do not move.

Selection (which of them a model should use) is a separate step, by validation gain:
`benchmarks/autofeatures.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import ACTIVITY_DIRECTIONS, ACTIVITY_TYPES
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature

WINDOWS_DAYS = (7, 30, 90)
Relation = Literal["self", "company", "rep"]
RELATIONS: tuple[Relation, ...] = ("self", "company", "rep")
# The entity tables generation knows: id column of the snapshot index, table, related_type in activities.
ENTITIES = {"opportunity": ("opportunity_id", "opportunities"), "lead": ("lead_id", "leads")}
# Recency of "never": a deal without any touch of a kind is as far from one as the longest window says.
NEVER_DAYS = 365.0


@dataclass(frozen=True)
class GeneratedFeature:
    """One generated aggregate: its name, the SQL expression over the joined activities `a` and snapshot `g`,
    the relation it aggregates over and the source table it reads (for the audit)."""

    name: str
    sql: str
    relation: Relation
    kind: Literal["count", "recency", "ratio", "trend"]
    description: str
    source: str = "activities"


def _window(days: int) -> str:
    return f"a.created_at > g.as_of - INTERVAL {days} DAY"


def _filters() -> list[tuple[str, str, str]]:
    """(name part, SQL condition, description) for every activity slice: all, each type, each direction."""
    slices = [("all", "TRUE", "touches")]
    slices += [(kind, f"a.type = '{kind}'", f"{kind}s") for kind in ACTIVITY_TYPES]
    slices += [(way, f"a.direction = '{way}'", f"{way} touches") for way in ACTIVITY_DIRECTIONS if way != "unknown"]
    return slices


def generate_features(relations: tuple[Relation, ...] = RELATIONS) -> list[GeneratedFeature]:
    """Every candidate: counts per slice and window, recency per slice, inbound share and short/long trends."""
    features: list[GeneratedFeature] = []
    for relation in relations:
        prefix = f"gen_{relation}"
        for part, condition, words in _filters():
            for days in WINDOWS_DAYS:
                features.append(
                    GeneratedFeature(
                        f"{prefix}_{part}_count_{days}d",
                        f"count(a.id) FILTER (WHERE {condition} AND {_window(days)})",
                        relation,
                        "count",
                        f"{words} in the last {days} days ({relation})",
                    )
                )
            features.append(
                GeneratedFeature(
                    f"{prefix}_{part}_days_since",
                    f"coalesce((epoch_us(g.as_of) - epoch_us(max(a.created_at) FILTER (WHERE {condition}))) "
                    f"/ 86400e6, {NEVER_DAYS})",
                    relation,
                    "recency",
                    f"days since the last of the {words} ({relation}; {NEVER_DAYS:.0f} if none)",
                )
            )
        for days in WINDOWS_DAYS[1:]:
            inbound = f"count(a.id) FILTER (WHERE a.direction = 'inbound' AND {_window(days)})"
            total = f"count(a.id) FILTER (WHERE {_window(days)})"
            features.append(
                GeneratedFeature(
                    f"{prefix}_inbound_share_{days}d",
                    f"({inbound} + 1.0) / ({total} + 2.0)",
                    relation,
                    "ratio",
                    f"share of touches the customer started, last {days} days, smoothed ({relation})",
                )
            )
        short, long = WINDOWS_DAYS[0], WINDOWS_DAYS[-1]
        features.append(
            GeneratedFeature(
                f"{prefix}_trend_{short}d_vs_{long}d",
                f"(count(a.id) FILTER (WHERE {_window(short)}) * {long / short} + 1.0) / "
                f"(count(a.id) FILTER (WHERE {_window(long)}) + 1.0)",
                relation,
                "trend",
                f"touch rate of the last {short} days over that of the last {long} ({relation}; > 1 = speeding up)",
            )
        )
    return features


def generated_spec(features: list[GeneratedFeature]) -> FeatureSpec:
    """The FeatureSpec of a selection: counts are log-compressed, ratios and recencies kept linear."""
    return FeatureSpec(
        numeric=tuple(NumericFeature(f.name, f.description, log1p=f.kind == "count") for f in features),
        categorical=(),
    )


def _relation_join(relation: Relation, entity: str) -> str:
    """How the snapshot row `g` (with its entity id, company_id and rep) reaches the activities `a`."""
    if relation == "self":
        return f"a.related_type = '{entity}' AND a.related_id = g.entity_id"
    if relation == "company":
        # Every touch on any of the company's deals and leads, and on the company itself.
        return "a.company_id = g.company_id"
    return "a.created_by = g.rep_id"


def compute_generated_features(
    tables: CRMTables, index: pd.DataFrame, features: list[GeneratedFeature], entity: str = "opportunity"
) -> pd.DataFrame:
    """Values of `features` for each (entity id, as_of) row of `index`, in index order, plus one
    `_source_time_<relation>` column per relation: the newest activity (or the entity's creation) it read."""
    if entity not in ENTITIES:
        raise FulqrunMLError(f"entity: unknown '{entity}'; generated features know {sorted(ENTITIES)}")
    id_column, table_name = ENTITIES[entity]
    if id_column not in index.columns or "as_of" not in index.columns:
        raise FulqrunMLError(f"index: needs columns '{id_column}' and 'as_of', got {list(index.columns)}")
    entities = tables.table(table_name).set_index("id")
    known = index[id_column].isin(entities.index)
    if not known.all():
        missing = index.loc[~known, id_column].iloc[0]
        raise FulqrunMLError(f"{id_column}: '{missing}' is not in the {table_name} table")
    grid = pd.DataFrame(
        {
            "row": np.arange(len(index)),
            "entity_id": index[id_column].to_numpy(),
            "as_of": pd.to_datetime(index["as_of"], utc=True).to_numpy(),
            "company_id": entities["company_id"].reindex(index[id_column]).to_numpy(),
            "rep_id": entities["assigned_to"].reindex(index[id_column]).to_numpy(),
            "created_at": entities["created_at"].reindex(index[id_column]).to_numpy(),
        }
    )
    out = grid[["row"]].copy()
    con = duckdb.connect()
    try:
        con.register("grid", grid)
        con.register("acts", _activities_with_company(tables))
        for relation in sorted({f.relation for f in features}):
            chosen = [f for f in features if f.relation == relation]
            columns = ",\n".join(f"{f.sql} AS {f.name}" for f in chosen)
            frame = con.execute(
                f"""SELECT g.row, {columns},
                    greatest(max(g.created_at), coalesce(max(a.created_at), max(g.created_at)))
                        AS _source_time_{relation}
                FROM grid g LEFT JOIN acts a ON {_relation_join(relation, entity)} AND a.created_at <= g.as_of
                GROUP BY g.row, g.as_of"""
            ).df()
            out = out.merge(frame, on="row", how="left")
    finally:
        con.close()
    out = out.sort_values("row").drop(columns="row").reset_index(drop=True)
    for column in out.columns:
        if column.startswith("_source_time_"):
            out[column] = pd.to_datetime(out[column], utc=True)
        else:
            out[column] = out[column].astype(np.float64)
    return out


def generated_source_times(values: pd.DataFrame, index: pd.DataFrame, features: list[GeneratedFeature]) -> pd.DataFrame:
    """The audit's input (features/audit.py): per row and feature, the newest source timestamp it read."""
    times = {f.name: values[f"_source_time_{f.relation}"].to_numpy() for f in features}
    return pd.DataFrame({"as_of": pd.to_datetime(index["as_of"], utc=True).to_numpy(), **times})


def _activities_with_company(tables: CRMTables) -> pd.DataFrame:
    """Activities with the company each one is about: the related deal's or lead's company, the company
    itself, or a contact's company. Unknown relations get no company (they still count for self and rep)."""
    acts = tables.activities
    company_of = pd.concat(
        [
            tables.opportunities.set_index("id")["company_id"],
            tables.leads.set_index("id")["company_id"],
            tables.contacts.set_index("id")["company_id"] if "company_id" in tables.contacts else pd.Series(dtype=str),
            pd.Series(tables.companies["id"].to_numpy(), index=tables.companies["id"].to_numpy()),
        ]
    )
    company_of = company_of[~company_of.index.duplicated()]
    direction = acts["direction"] if "direction" in acts else pd.Series("unknown", index=acts.index)
    return pd.DataFrame(
        {
            "id": acts["id"].to_numpy(),
            "type": acts["type"].to_numpy(),
            "direction": direction.fillna("unknown").to_numpy(),
            "related_type": acts["related_type"].to_numpy(),
            "related_id": acts["related_id"].to_numpy(),
            "created_by": acts["created_by"].to_numpy(),
            "company_id": company_of.reindex(acts["related_id"]).to_numpy(),
            "created_at": pd.to_datetime(acts["created_at"], utc=True).to_numpy(),
        }
    )
