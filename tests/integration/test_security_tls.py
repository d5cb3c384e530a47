"""TLS in transit against the real processes, with self-signed certificates made per test (serving/tls_selfsigned.py):
Triton's gRPC endpoint, PostgreSQL (`sslmode=verify-ca` from the client) and Redis (`rediss://`).

Each one: our own client code (the SDK, PostgresSource / load_crm_into_postgres, OnlineStore) works over TLS with
the right trust root; a plaintext client and a client trusting another root are refused with an error that names
the problem and never holds the planted password."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
import tritonclient.grpc as grpcclient
from omegaconf import OmegaConf
from tritonclient.utils import InferenceServerException

from fulqrun_ml.data.contract import TABLE_COLUMNS
from fulqrun_ml.data.sources import DSN_ENV, PostgresSource, SimulatorSource, SourceError, load_crm_into_postgres
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.online.store import OnlineStore, OnlineStoreError
from fulqrun_ml.online.views import DEAL_WIN_VIEW, view_for_task
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.serving import tls
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.serving.tls import GrpcServerTLS
from fulqrun_ml.serving.tls_selfsigned import PKI, make_pki
from tests.integration.tls_services import tls_postgres, tls_redis

pytestmark = pytest.mark.integration
PASSWORD = "planted-tls-password-9c1e"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def served(published, pki, tmp_path_factory):
    """deal_win on a Triton whose gRPC endpoint requires TLS (server certificate only), and 20 holdout rows."""
    version, _ = published
    repo = tmp_path_factory.mktemp("repo")
    TritonRepositoryBuilder(repo).add(version, config_for_version(version))
    run_dir = Path(json.loads((version.path / "lineage.json").read_text())["run_dir"])
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = pd.read_parquet(run_dir / "holdout.parquet")[spec.spec.names].head(20)
    with TritonServer(repo, explicit_models=["deal_win"], tls=GrpcServerTLS(pki.cert, pki.key)) as server:
        yield server, rows


def _refused(url: str, **options) -> str:
    client = grpcclient.InferenceServerClient(url, **options)
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.is_server_live(client_timeout=10)
    finally:
        client.close()
    return str(caught.value)


def test_triton_grpc_is_served_over_tls_only(served, pki, monkeypatch) -> None:
    server, rows = served
    monkeypatch.setenv(tls.CA_ENV, str(pki.ca))
    with (
        TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as over_tls,
        TritonPredictionClient(server.http_url, "deal_win") as over_http,
    ):
        assert over_tls.is_ready()
        np.testing.assert_allclose(over_tls.predict(rows), over_http.predict(rows), atol=1e-7)
    assert "UNAVAILABLE" in _refused(server.grpc_url)  # plaintext gRPC: the handshake never completes
    assert "CERTIFICATE_VERIFY_FAILED" in _refused(server.grpc_url, ssl=True, root_certificates=str(pki.other_ca))
    monkeypatch.setenv(tls.CA_ENV, str(pki.other_ca))  # the SDK trusting someone else's root: not ready, no answer
    with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as wrong_root:
        assert not wrong_root.is_ready()


def test_triton_mutual_tls_requires_a_client_certificate(published, pki, tmp_path, monkeypatch) -> None:
    version, _ = published
    TritonRepositoryBuilder(tmp_path / "repo").add(version, config_for_version(version))
    mutual = GrpcServerTLS(pki.cert, pki.key, client_ca=pki.ca)
    with TritonServer(tmp_path / "repo", explicit_models=["deal_win"], tls=mutual) as server:
        assert "UNAVAILABLE" in _refused(server.grpc_url, ssl=True, root_certificates=str(pki.ca))  # no client cert
        monkeypatch.setenv(tls.CA_ENV, str(pki.ca))
        monkeypatch.setenv(tls.CLIENT_CERT_ENV, str(pki.client_cert))
        monkeypatch.setenv(tls.CLIENT_KEY_ENV, str(pki.client_key))
        with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
            assert client.is_ready()


def test_postgres_source_reads_over_verify_ca_and_plaintext_is_refused(pki, monkeypatch) -> None:
    crm = SimulatorSource(n_opportunities=60, n_companies=15, n_reps=6, seed=21)()
    with tls_postgres(pki, PASSWORD) as pg:
        base = f"postgresql://postgres:{PASSWORD}@{pg.host}:{pg.port}/postgres"
        dsn = f"{base}?sslmode=verify-ca&sslrootcert={pki.ca}"
        written = load_crm_into_postgres(crm.tables, dsn, schema="tls")
        monkeypatch.setenv(DSN_ENV, dsn)  # how `fulqrun-ml train data=postgres` gets it: the environment only
        loaded = PostgresSource(schema="tls", extracted_at=crm.tables.extracted_at)()
        assert {name: len(loaded.table(name)) for name in TABLE_COLUMNS} == {n: written[n] for n in TABLE_COLUMNS}
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
        refusals = {
            "no encryption": f"{base}?sslmode=disable",
            "certificate verify failed": f"{base}?sslmode=verify-ca&sslrootcert={pki.other_ca}",
        }
        for expected, bad in refusals.items():
            with pytest.raises(SourceError) as caught:
                PostgresSource(bad, schema="tls")()
            message = str(caught.value)
            assert message.startswith("cannot connect to PostgreSQL") and expected in message, message
            assert PASSWORD not in message
        # libpq's own switch for every connection of a process whose DSN sets no sslmode (docs/security.md).
        monkeypatch.setenv("PGSSLMODE", "verify-ca")
        monkeypatch.setenv("PGSSLROOTCERT", str(pki.other_ca))
        with pytest.raises(SourceError, match="certificate verify failed"):
            PostgresSource(base, schema="tls")()
        monkeypatch.setenv("PGSSLROOTCERT", str(pki.ca))
        assert len(PostgresSource(base, schema="tls")().table("opportunities")) == written["opportunities"]


def test_online_store_over_rediss_and_plaintext_is_refused(pki, tmp_path) -> None:
    tables = SimulatorSource(n_opportunities=80, n_companies=20, n_reps=5, seed=3)().tables
    view = dataclasses.replace(DEAL_WIN_VIEW, name=f"deal_win_tls_{uuid.uuid4().hex[:8]}")
    as_of = tables.extracted_at - pd.Timedelta(days=90)
    rows = view.compute_at(tables, view.open_entities(tables, as_of)[:5], as_of)
    with tls_redis(pki, PASSWORD, tmp_path) as server:
        where = f"{server.host}:{server.port}/0"
        store = OnlineStore(f"rediss://:{PASSWORD}@{where}?ssl_ca_certs={pki.ca}&ssl_cert_reqs=required")
        assert store.write(view, rows) == len(rows)
        back = store.read(view, rows["opportunity_id"].tolist(), now=as_of + pd.Timedelta(minutes=1))
        assert (back["status"] == "ok").all()
        assert store.client.connection_pool.connection_kwargs["ssl_ca_certs"] == str(pki.ca)
        refusals = {
            f"redis://:{PASSWORD}@{where}": "Connection",  # plaintext to a TLS-only port: reset / closed
            f"rediss://:{PASSWORD}@{where}?ssl_ca_certs={pki.other_ca}": "CERTIFICATE_VERIFY_FAILED",
        }
        for url, expected in refusals.items():
            with pytest.raises(OnlineStoreError) as caught:
                OnlineStore(url, socket_timeout=2).ping()
            message = str(caught.value)
            assert message.startswith(f"online store {url.split(':', 1)[0]}://{where} unreachable while pinging")
            assert expected in message and PASSWORD not in message, message


def test_scoring_by_id_is_tls_end_to_end(published, tiny_crm, pki, tmp_path, monkeypatch) -> None:
    """SDK -(gRPC over TLS)-> Triton `deal_win_by_id` -(rediss://, password from the environment)-> Redis: the
    answers equal the raw-record endpoint's, and the password is in no generated file or server log."""
    version, _ = published
    opps = tiny_crm.tables.opportunities
    ids = opps.loc[~opps["stage"].isin(["closed_won", "closed_lost"]), "id"].head(8)
    as_of = tiny_crm.tables.activities["created_at"].max()
    rows = compute_deal_features(tiny_crm.tables, pd.DataFrame({"opportunity_id": ids.to_numpy(), "as_of": as_of}))
    rows = rows[["opportunity_id", *DEAL_WIN_FEATURES.names]].reset_index(drop=True)
    view = view_for_task("deal_win")
    with tls_redis(pki, PASSWORD, tmp_path / "redis") as redis_server:
        where = f"{redis_server.host}:{redis_server.port}/0?ssl_ca_certs={pki.ca}"
        store = OnlineStore(f"rediss://:{PASSWORD}@{where}")
        assert store.write(view, rows.assign(as_of=pd.Timestamp.now(tz="UTC").floor("ms"))) == len(rows)
        store.register(view, "deal_win", version.version)
        monkeypatch.setenv("FULQRUN_REDIS_PASSWORD", PASSWORD)  # the backend's password: environment only
        serving = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "serving" / "cpu.yaml"), resolve=False)
        serving |= {"prediction_log": {"enabled": False}}
        serving["by_id"] = {"enabled": True, "redis_url": f"rediss://{where}", "socket_timeout_s": 2.0}
        repo = tmp_path / "repo"
        for config in cpu_serving_configs(version, serving):
            if config.name != "deal_win_reasons":  # not needed here; one Python stub fewer on a small machine
                TritonRepositoryBuilder(repo).add(version, config)
        with TritonServer(repo, tls=GrpcServerTLS(pki.cert, pki.key)) as server:
            monkeypatch.setenv(tls.CA_ENV, str(pki.ca))
            with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
                by_id = client.predict_by_id(rows["opportunity_id"].tolist())
                direct = client.predict(rows[DEAL_WIN_FEATURES.names])
            log = server.log_tail(100_000)
        assert {r.status for r in by_id} == {"ok"}
        np.testing.assert_allclose([r.probability for r in by_id], direct, atol=1e-6)
        assert PASSWORD not in log
        assert not [p for p in repo.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
