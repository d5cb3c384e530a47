"""Shared by the CDC and stream tests: a fresh database per module holding a tiny simulated CRM, and the SQL
a CRM writer would run (new touches, stage changes, closes), stamped with the database clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.schemas import CRM_SCHEMAS
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import PostgresSource, load_crm_into_postgres
from fulqrun_ml.online.store import OnlineStore, categorical_text
from fulqrun_ml.online.views import FeatureView


def fresh_database(server_dsn: str, prefix: str) -> Iterator[str]:
    """A new database in the session's cluster, dropped afterwards (FORCE: a killed worker may hold it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server_dsn, dbname=name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tiny_crm(seed: int = 5, n_opportunities: int = 200) -> CRMTables:
    return simulate_crm(n_opportunities=n_opportunities, n_companies=40, n_reps=8, n_leads=150, seed=seed).tables


def load_tiny_crm(dsn: str, seed: int = 5, n_opportunities: int = 200) -> CRMTables:
    tables = tiny_crm(seed, n_opportunities)
    load_crm_into_postgres(tables, dsn)
    return tables


def by_key(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    return frame.sort_values(list(CRM_SCHEMAS[table].key), kind="stable").reset_index(drop=True)


def add_activity(conn: psycopg.Connection, deal: str, kind: str = "call", direction: str = "outbound") -> str:
    """A touch on `deal`, created now (database clock), by the deal's owner."""
    activity = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO activities (id, organization_id, type, status, subject, description, related_type, related_id,"
        " created_by, due_date, created_at, direction) SELECT %s, organization_id, %s, 'completed', 'follow up', NULL,"
        " 'opportunity', id, assigned_to, NULL, clock_timestamp(), %s FROM opportunities WHERE id = %s",
        (activity, kind, direction, deal),
    )
    return activity


def change_stage(conn: psycopg.Connection, deal: str, to_stage: str) -> None:
    """Move `deal` to `to_stage` now: a stage_history row and the opportunity's stage, as the CRM writes both."""
    conn.execute(
        "INSERT INTO stage_history (opportunity_id, from_stage, to_stage, changed_at)"
        " SELECT id, stage, %s, clock_timestamp() FROM opportunities WHERE id = %s",
        (to_stage, deal),
    )
    conn.execute("UPDATE opportunities SET stage = %s, updated_at = clock_timestamp() WHERE id = %s", (to_stage, deal))


def server_of(dsn: str) -> dict[str, str]:
    return conninfo_to_dict(dsn)


def online_vs_offline(store: OnlineStore, view: FeatureView, dsn: str, ids: list[str]) -> pd.DataFrame:
    """Online rows of `ids` beside an offline recomputation, at each row's stored as_of, from a fresh load of the
    CRM (the same `view.compute`, a different path: PostgresSource, not the mirror). Returns the mismatches
    (entity, feature, online, offline); every id must have an online row."""
    online = store.read(view, ids, with_meta=True)
    unknown = online.loc[online["status"] == "unknown", view.entity_column].tolist()
    assert not unknown, f"no online row for {unknown[:5]} ({len(unknown)} ids)"
    fresh = PostgresSource(dsn).load()
    mismatches = []
    for as_of, rows in online.groupby("as_of"):
        offline = view.compute_at(fresh, rows[view.entity_column].tolist(), pd.Timestamp(as_of))
        offline = offline.set_index(view.entity_column)
        for _, row in rows.iterrows():
            entity = row[view.entity_column]
            for name in view.numeric_names:
                a, b = float(row[name]), float(offline.at[entity, name])
                if not (a == b or (np.isnan(a) and np.isnan(b))):
                    mismatches.append((entity, name, a, b))
            for name in view.categorical_names:
                a, b = row[name], categorical_text(offline.at[entity, name])
                if a != b:
                    mismatches.append((entity, name, a, b))
    return pd.DataFrame(mismatches, columns=["entity", "feature", "online", "offline"])
