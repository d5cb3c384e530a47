"""TLS settings for Triton's gRPC endpoint (serving/tls.py): a bad setting is one error naming the variable and
the file, never the key's bytes; a good one becomes tritonserver's flags and tritonclient's options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.serving import tls
from fulqrun_ml.serving.by_id import checked_redis_url
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.serving.tls import GrpcClientTLS, GrpcServerTLS, TLSConfigError, grpc_client_options
from fulqrun_ml.serving.tls_selfsigned import PKI, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_nothing_configured_is_plain_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (tls.CERT_ENV, tls.KEY_ENV, tls.CLIENT_CA_ENV, tls.CA_ENV, tls.CLIENT_CERT_ENV, tls.CLIENT_KEY_ENV):
        monkeypatch.delenv(var, raising=False)
    assert GrpcServerTLS.from_env() is None and GrpcClientTLS.from_env() is None
    assert grpc_client_options() == {}


def test_server_settings_become_tritonserver_flags(pki: PKI, tmp_path: Path) -> None:
    env = {tls.CERT_ENV: str(pki.cert), tls.KEY_ENV: str(pki.key)}
    server = GrpcServerTLS.from_env(env)
    assert server is not None
    assert server.flags() == ["--grpc-use-ssl=true", f"--grpc-server-cert={pki.cert}", f"--grpc-server-key={pki.key}"]
    mutual = GrpcServerTLS.from_env({**env, tls.CLIENT_CA_ENV: str(pki.ca)})
    assert mutual is not None and "--grpc-use-ssl-mutual=true" in mutual.flags()
    assert f"--grpc-root-cert={pki.ca}" in mutual.flags()
    command = TritonServer(tmp_path / "repo", tls=server).command()
    assert "--grpc-use-ssl=true" in command and f"--grpc-server-key={pki.key}" in command


def test_client_settings_become_tritonclient_options(pki: PKI) -> None:
    client = GrpcClientTLS.from_env({tls.CA_ENV: str(pki.ca)})
    assert client is not None
    assert grpc_client_options(client) == {"ssl": True, "root_certificates": str(pki.ca)}
    mutual = GrpcClientTLS.from_env(
        {tls.CA_ENV: str(pki.ca), tls.CLIENT_CERT_ENV: str(pki.client_cert), tls.CLIENT_KEY_ENV: str(pki.client_key)}
    )
    assert mutual is not None
    assert mutual.client_options()["certificate_chain"] == str(pki.client_cert)
    assert mutual.client_options()["private_key"] == str(pki.client_key)


def _refusal(env: dict[str, str], side: type = GrpcServerTLS) -> str:
    with pytest.raises(TLSConfigError) as caught:
        side.from_env(env)
    return str(caught.value)


def test_bad_settings_are_one_error_naming_variable_and_file(pki: PKI, tmp_path: Path) -> None:
    key_text = pki.key.read_text()
    missing = tmp_path / "nowhere.pem"
    messages = {
        "half": _refusal({tls.CERT_ENV: str(pki.cert)}),
        "missing cert": _refusal({tls.CERT_ENV: str(missing), tls.KEY_ENV: str(pki.key)}),
        "wrong key": _refusal({tls.CERT_ENV: str(pki.cert), tls.KEY_ENV: str(pki.client_key)}),
        "key as cert": _refusal({tls.CERT_ENV: str(pki.key), tls.KEY_ENV: str(pki.key)}),
        "cert as key": _refusal({tls.CERT_ENV: str(pki.cert), tls.KEY_ENV: str(_copy(pki.cert, tmp_path, 0o600))}),
        "client ca alone": _refusal({tls.CLIENT_CA_ENV: str(pki.ca)}),
        "client cert without ca": _refusal(
            {tls.CLIENT_CERT_ENV: str(pki.client_cert), tls.CLIENT_KEY_ENV: str(pki.client_key)}, GrpcClientTLS
        ),
        "ca missing": _refusal({tls.CA_ENV: str(missing)}, GrpcClientTLS),
    }
    assert messages["half"] == f"{tls.KEY_ENV} is not set: {tls.CERT_ENV} and {tls.KEY_ENV} go together"
    assert messages["missing cert"] == f"{tls.CERT_ENV}: file {missing} does not exist"
    assert messages["wrong key"] == (
        f"{tls.KEY_ENV}: the key in {pki.client_key} does not belong to the certificate in {pki.cert}"
    )
    assert messages["key as cert"] == f"{tls.CERT_ENV}: {pki.key} holds no PEM certificate"
    assert "is not an unencrypted PEM private key" in messages["cert as key"]
    assert messages["client ca alone"].startswith(f"{tls.CLIENT_CA_ENV} is set but")
    assert messages["client cert without ca"].startswith(f"{tls.CLIENT_CERT_ENV} is set but {tls.CA_ENV}")
    assert messages["ca missing"] == f"{tls.CA_ENV}: file {missing} does not exist"
    for message in messages.values():
        assert "PRIVATE KEY" not in message and key_text not in message


def test_a_private_key_readable_by_others_is_refused(pki: PKI, tmp_path: Path) -> None:
    loose = _copy(pki.key, tmp_path, 0o644)
    message = _refusal({tls.CERT_ENV: str(pki.cert), tls.KEY_ENV: str(loose)})
    assert message == f"{tls.KEY_ENV}: private key file {loose} is readable by group or others (mode 644); chmod 600 it"


def _copy(source: Path, directory: Path, mode: int) -> Path:
    target = directory / f"copy-{mode:o}-{source.name}"
    target.write_bytes(source.read_bytes())
    os.chmod(target, mode)
    return target


def test_require_tls_refuses_every_plaintext_fallback(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in (tls.CERT_ENV, tls.KEY_ENV, tls.CLIENT_CA_ENV, tls.CA_ENV, tls.CLIENT_CERT_ENV, tls.CLIENT_KEY_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(tls.REQUIRE_ENV, "1")
    with pytest.raises(TLSConfigError, match=f"{tls.REQUIRE_ENV} is set but {tls.CERT_ENV} and {tls.KEY_ENV} are not"):
        TritonServer(tmp_path / "repo")
    with pytest.raises(TLSConfigError, match=f"{tls.REQUIRE_ENV} is set but {tls.CA_ENV} is not"):
        grpc_client_options()
    with pytest.raises(TLSConfigError, match=r"serving\.by_id\.redis_url is a plaintext redis:// URL"):
        checked_redis_url("redis://127.0.0.1:6379/0")
    for url in ("rediss://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", "unix:///run/redis.sock"):
        assert checked_redis_url(url) == url
    with pytest.raises(TLSConfigError) as caught:
        OnlineStore("redis://:planted-pw-31f@127.0.0.1:6379/0")
    assert (
        str(caught.value)
        == f"the online store URL is a plaintext redis:// URL but {tls.REQUIRE_ENV} is set: use rediss://"
    )
    assert OnlineStore("rediss://127.0.0.1:6379/0").location == "rediss://127.0.0.1:6379/0"
    monkeypatch.setenv(tls.CERT_ENV, str(pki.cert))
    monkeypatch.setenv(tls.KEY_ENV, str(pki.key))
    monkeypatch.setenv(tls.CA_ENV, str(pki.ca))
    assert "--grpc-use-ssl=true" in TritonServer(tmp_path / "repo").command()
    assert grpc_client_options()["ssl"] is True
    monkeypatch.setenv(tls.REQUIRE_ENV, "0")
    assert checked_redis_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
