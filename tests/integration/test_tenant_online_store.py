"""Tenant isolation of the Redis online store against a real redis-server: organisation A asks for organisation
B's deal ids and gets `unknown` with no features; a write of B's row through A's store is refused whole."""

from __future__ import annotations

import dataclasses
import uuid

import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.tenancy import TenantAccessError, scoped_id
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.tenant_store import TenantOnlineStore, keys_of_entities
from fulqrun_ml.online.views import DEAL_WIN_VIEW

pytestmark = pytest.mark.integration


def _org_rows(seed: int, name: str):
    tables = simulate_crm(n_opportunities=120, n_companies=25, n_reps=4, seed=seed, organization_name=name).tables
    view = dataclasses.replace(DEAL_WIN_VIEW, name=f"deal_win_tenant_{uuid.uuid4().hex[:8]}")
    as_of = tables.extracted_at - pd.Timedelta(days=60)
    rows = DEAL_WIN_VIEW.compute_at(tables, DEAL_WIN_VIEW.open_entities(tables, as_of)[:5], as_of)
    return str(tables.organizations["id"].iloc[0]), rows, view


def test_one_organisation_never_reads_or_writes_anothers_features(redis_url: str) -> None:
    org_a, rows_a, view = _org_rows(1, "Org A")
    org_b, rows_b, _ = _org_rows(2, "Org B")
    store = OnlineStore(redis_url)
    a, b = TenantOnlineStore(store, org_a), TenantOnlineStore(store, org_b)
    assert a.write(view, rows_a.assign(organization_id=org_a)) == len(rows_a)
    assert b.write(view, rows_b.assign(organization_id=org_b)) == len(rows_b)
    b_ids = rows_b["opportunity_id"].tolist()

    # A asks for B's deals: no row, no feature value, status unknown (the same as an id that never existed)
    crossed = a.read(view, b_ids)
    assert (crossed["status"] == "unknown").all()
    assert crossed[view.numeric_names].isna().all().all()
    assert crossed[view.categorical_names].isna().all().all()
    assert not set(a.entity_ids(view)) & set(b_ids)
    # while B reads them, and A its own
    assert (b.read(view, b_ids)["status"] != "unknown").all()
    assert (a.read(view, rows_a["opportunity_id"].tolist())["status"] != "unknown").all()
    # the keys carry the organisation
    assert all(store.client.exists(view.key(scoped_id(org_b, e))) for e in b_ids)
    assert not any(store.client.exists(view.key(scoped_id(org_a, e))) for e in b_ids)

    # A writing a batch holding one of B's rows: refused, naming the row; nothing of the batch reaches Redis
    mixed = pd.concat([rows_a.assign(organization_id=org_a), rows_b.iloc[:1].assign(organization_id=org_b)])
    before = sorted(store.client.scan_iter(match=f"fq:fv:{view.name}:*"))
    as_of_before = a.read(view, rows_a["opportunity_id"].tolist())["as_of"].tolist()
    with pytest.raises(TenantAccessError, match=rf"row {len(rows_a)} .* belongs to another organisation"):
        a.write(view, mixed.assign(as_of=mixed["as_of"] + pd.Timedelta(days=1)))
    with pytest.raises(TenantAccessError, match="carry no 'organization_id'"):
        a.write(view, rows_a)
    assert sorted(store.client.scan_iter(match=f"fq:fv:{view.name}:*")) == before
    assert a.read(view, rows_a["opportunity_id"].tolist())["as_of"].tolist() == as_of_before
    assert len(keys_of_entities(store, b_ids)) == len(b_ids)


def test_bad_organisation_ids_cannot_escape_the_namespace(redis_url: str) -> None:
    store = OnlineStore(redis_url)
    for bad in ("", "*", "a/b", "a:b", "a*", None, "x" * 200):
        with pytest.raises(TenantAccessError, match="not a valid organisation id"):
            TenantOnlineStore(store, bad)
