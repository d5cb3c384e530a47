"""The caller's organisation on the serving path (issue 19 item 4): a real Triton behind the gateway, a real Redis.

Two organisations' deal features are written by `TenantOnlineStore` (keys `@<org>/<id>`). Through the gateway,
organisation A asks for its own deals, B's deals and ids that do not exist, with the SDK (binary tensors) and with
plain JSON; B's deals must answer exactly like unknown ids. With tenancy enforced, a request without
`X-Fulqrun-Org` is refused with 403 and a malformed organisation with 400. A raw-record request's `entity_id` is
logged by the Triton backend with the caller's organisation. Broken on purpose once: the gateway's scoping turned
off (see the report of the change)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from omegaconf import OmegaConf

from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.monitoring.tenant_log import organisation_of
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.tenant_store import TenantOnlineStore
from fulqrun_ml.online.views import view_for_task
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.repository import TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.serving.tenant_gateway import ORG_HEADER, TENANCY_ENV

pytestmark = pytest.mark.integration
VIEW = view_for_task("deal_win")
ORG_B = "other-org"
N = 8


@pytest.fixture(scope="module")
def tenants(tiny_crm, redis_url):
    """(org A, A's deal ids, B's deal ids, feature rows by id): A = the CRM's organisation, B = a second one."""
    opps = tiny_crm.tables.opportunities
    open_ids = opps.loc[~opps["stage"].isin(["closed_won", "closed_lost"]), "id"].head(2 * N)
    as_of = tiny_crm.tables.activities["created_at"].max()
    rows = compute_deal_features(tiny_crm.tables, pd.DataFrame({"opportunity_id": open_ids.to_numpy(), "as_of": as_of}))
    rows = rows[["opportunity_id", *DEAL_WIN_FEATURES.names]].reset_index(drop=True)
    org_a = str(opps["organization_id"].iloc[0])
    store = OnlineStore(redis_url)
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    a_rows, b_rows = rows.iloc[:N], rows.iloc[N:]
    TenantOnlineStore(store, org_a).write(VIEW, a_rows.assign(organization_id=org_a, as_of=now))
    TenantOnlineStore(store, ORG_B).write(VIEW, b_rows.assign(organization_id=ORG_B, as_of=now))
    return org_a, list(a_rows["opportunity_id"]), list(b_rows["opportunity_id"])


@pytest.fixture(scope="module")
def served(published, redis_url, tenants, tmp_path_factory):
    version, _ = published
    OnlineStore(redis_url).register(VIEW, "deal_win", version.version)
    root = tmp_path_factory.mktemp("tenant_serving")
    serving = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "serving" / "cpu.yaml"), resolve=False)
    serving |= {"max_batch_size": 64, "prediction_log": {"enabled": True, "dir": str(root / "log"), "fsync": False}}
    serving["by_id"] = {"enabled": True, "redis_url": redis_url, "socket_timeout_s": 0.3}
    repo = root / "repo"
    for config in cpu_serving_configs(version, serving):
        if config.name != "deal_win_reasons":
            TritonRepositoryBuilder(repo).add(version, config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TENANCY_ENV, "enforce")
        with TritonServer(repo, gateway=True) as server:
            yield server, root / "log" / "spool", version


def _by_id(server, org: str, ids: list[str]):
    with TritonPredictionClient(server.http_url, "deal_win", organization_id=org) as client:
        return {row.id: row for row in client.predict_by_id(ids)}


def test_another_organisations_deal_answers_like_an_unknown_id(served, tenants):
    server, _, _ = served
    org_a, mine, theirs = tenants
    unknown = ["00000000-0000-0000-0000-000000000000", "no-such-deal"]
    rows = _by_id(server, org_a, [*mine, *theirs, *unknown])
    assert all(rows[i].status == "ok" and math.isfinite(rows[i].probability) for i in mine)
    nothing = rows[unknown[0]]
    assert nothing.status == "unknown" and math.isnan(nothing.probability)
    for deal in [*theirs, unknown[1]]:  # no existence oracle: B's deals look exactly like ids nobody has
        assert (rows[deal].status, rows[deal].as_of) == (nothing.status, nothing.as_of)
        assert all(math.isnan(v) for v in np.ravel(list(rows[deal].outputs.values())))
    # B's deals are there: B itself reads them, and gets the same answers a scoring of the rows would give.
    as_b = _by_id(server, ORG_B, theirs + mine)
    assert all(as_b[i].status == "ok" for i in theirs) and all(as_b[i].status == "unknown" for i in mine)


def _json_by_id(server, ids: list[str], headers: dict[str, str]) -> requests.Response:
    body = {"inputs": [{"name": "ids", "shape": [len(ids), 1], "datatype": "BYTES", "data": ids}]}
    return requests.post(
        f"http://{server.http_url}/v2/models/deal_win_by_id/infer", json=body, headers=headers, timeout=30
    )


def test_plain_json_ids_are_scoped_too(served, tenants):
    server, _, _ = served
    org_a, mine, theirs = tenants
    reply = _json_by_id(server, [mine[0], theirs[0]], {ORG_HEADER: org_a})
    assert reply.status_code == 200, reply.text
    status = next(o for o in reply.json()["outputs"] if o["name"] == "status")["data"]
    assert status == ["ok", "unknown"]


@pytest.mark.parametrize(
    ("headers", "code", "message"),
    [
        ({}, 403, f"send your organisation id in {ORG_HEADER}"),
        ({ORG_HEADER: "../x"}, 400, "is not a valid organisation id"),
        ({ORG_HEADER: "a*"}, 400, "is not a valid organisation id"),
    ],
)
def test_missing_or_bad_organisation_is_refused_when_tenancy_is_enforced(served, tenants, headers, code, message):
    server, _, _ = served
    _, mine, _ = tenants
    reply = _json_by_id(server, [mine[0]], headers)
    assert reply.status_code == code and message in reply.json()["error"], reply.text
    assert requests.get(f"http://{server.http_url}/v2/health/ready", timeout=10).status_code == 200  # not inference


def test_the_prediction_log_records_the_callers_organisation(served, tenants):
    server, spool, version = served
    org_a, mine, _ = tenants
    holdout = pd.read_parquet(
        Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet"
    )
    holdout = holdout.head(2)
    inputs = [(i["name"], "FP32" if i["dtype"] == "float32" else "BYTES") for i in version.metadata["inputs"]]
    body = {
        "parameters": {"entity_id": f"{mine[0]},{mine[1]}"},
        "inputs": [
            {
                "name": name,
                "shape": [2, 1],
                "datatype": dtype,
                "data": [float(v) if dtype == "FP32" else str(v) for v in holdout[name]],
            }
            for name, dtype in inputs
        ],
    }
    reply = requests.post(
        f"http://{server.http_url}/v2/models/deal_win/infer", json=body, headers={ORG_HEADER: org_a}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    logged = [json.loads(line) for file in sorted(spool.glob("*.jsonl")) for line in file.read_text().splitlines()]
    entity_ids = [e for line in logged for _, _, ids in line["requests"] if ids for e in ids]
    assert f"@{org_a}/{mine[0]}" in entity_ids and f"@{org_a}/{mine[1]}" in entity_ids
    assert not any(e in (mine[0], mine[1]) for e in entity_ids), "an unscoped id was logged"
    assert set(organisation_of(pd.Series(entity_ids))) == {org_a}  # how the monitoring side reads the org back
