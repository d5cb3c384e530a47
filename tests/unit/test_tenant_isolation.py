"""Tenant isolation without services: organisation A asks for organisation B's prediction-log rows, a request
id of B, and B's per-organisation model version; each is refused or comes back empty, never with B's data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fulqrun_ml.data.tenancy import TenantAccessError, owners, require_owned, scoped_id
from fulqrun_ml.monitoring.prediction_store import ParquetStore
from fulqrun_ml.monitoring.tenant_log import org_predictions, prediction_for
from fulqrun_ml.registry.store import publish_version
from fulqrun_ml.registry.tenancy import version_for_org

ORG_A, ORG_B = "org-a", "org-b"


def _record(request_id: str, entity_id: str | None, p: float) -> dict:
    return {
        "model": "deal_win",
        "request_id": request_id,
        "row": 0,
        "version": 1,
        "time": datetime(2026, 1, 1, tzinfo=UTC),
        "entity_id": entity_id,
        "latency_ms": 1.0,
        "inputs": {"value": p},
        "outputs": {"probability": p},
    }


def test_prediction_log_rows_are_read_only_by_their_organisation(tmp_path) -> None:
    store = ParquetStore(tmp_path / "log")
    store.commit(
        [
            _record("ra", scoped_id(ORG_A, "deal-1"), 0.1),
            _record("rb", scoped_id(ORG_B, "deal-2"), 0.9),
            _record("rx", None, 0.5),  # a raw request naming no entity: nobody's
        ],
        {},
    )
    mine = org_predictions(store, ORG_A)
    assert mine["request_id"].tolist() == ["ra"] and mine["entity_id"].tolist() == ["deal-1"]
    assert set(mine["organization_id"]) == {ORG_A}
    assert org_predictions(store, ORG_B)["probability"].tolist() == [0.9]
    assert len(prediction_for(store, ORG_A, "ra")) == 1
    # B's request asked by A reads exactly like a request that never existed
    for request in ("rb", "rx", "nope"):
        with pytest.raises(TenantAccessError, match=f"prediction request '{request}' is not found in organisation"):
            prediction_for(store, ORG_A, request)


def test_a_per_organisation_model_version_is_refused_to_others(tmp_path) -> None:
    def files(path):
        (path / "model.onnx").write_bytes(b"x")

    publish_version(tmp_path, "deal_win", files, {"organization_id": ORG_B})
    publish_version(tmp_path, "deal_win", files, {})  # shared
    assert version_for_org(tmp_path, "deal_win", 1, ORG_B).version == 1
    assert version_for_org(tmp_path, "deal_win", 2, ORG_A).version == 2
    with pytest.raises(TenantAccessError, match="model 'deal_win' version 1 is not found in organisation 'org-a'"):
        version_for_org(tmp_path, "deal_win", 1, ORG_A)


def test_ownership_comes_from_the_crm_and_foreign_ids_read_like_unknown_ones(tiny_crm) -> None:
    tables = tiny_crm.tables
    org = str(tables.organizations["id"].iloc[0])
    opportunity_owner = owners(tables, "opportunity").to_dict()
    contact_owner = owners(tables, "contact").to_dict()
    deal, contact = tables.opportunities["id"].iloc[0], tables.contacts["id"].iloc[0]
    require_owned(org, [deal], opportunity_owner, "opportunity")
    require_owned(org, [contact], contact_owner, "contact")
    messages = []
    for asked in (deal, "no-such-deal"):
        with pytest.raises(TenantAccessError) as err:
            require_owned("another-org", [asked], opportunity_owner, "opportunity")
        messages.append(str(err.value).replace(asked, "<id>"))
    assert messages[0] == messages[1] == "opportunity '<id>' is not found in organisation 'another-org'"
