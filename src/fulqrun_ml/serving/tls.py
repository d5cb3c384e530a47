"""TLS on Triton's gRPC endpoint: the server's certificate and key, the client's trust root, from the environment.

Why: predictions carry a CRM's commercial data and the model-control key travels as gRPC metadata; once Triton
listens beyond loopback (a load balancer, another host) anyone on the path could read both. Triton encrypts gRPC
itself (`--grpc-use-ssl`, `--grpc-use-ssl-mutual`), and tritonclient's gRPC clients take a root certificate, so
TLS here is configuration, checked before anything starts so that a wrong path or a key that does not belong to
the certificate is one clear error naming the variable and file, not a tritonserver that exits with "failed to
start GRPC service" or a client that hangs on a handshake.

Server (TritonServer reads these when no `GrpcTLS` is given):
  FULQRUN_TRITON_TLS_CERT, FULQRUN_TRITON_TLS_KEY   PEM certificate (chain) and private key; both or neither.
                                                    The key file must be owner-only (mode 0600), like ssh keys.
  FULQRUN_TRITON_TLS_CLIENT_CA                      optional: require client certificates signed by this CA.
Client (TritonPredictionClient / AsyncTritonPredictionClient over gRPC):
  FULQRUN_TRITON_TLS_CA                             PEM root that must have signed the server's certificate.
  FULQRUN_TRITON_TLS_CLIENT_CERT, ..._CLIENT_KEY    optional: the client's own certificate for mutual TLS.

Policy:
  FULQRUN_REQUIRE_TLS=1                             refuse plaintext instead of falling back to it: TritonServer
                                                    without a server certificate, an SDK gRPC client without a
                                                    trust root, a by-id `redis://` URL (`require_tls_url`). For
                                                    PostgreSQL libpq has its own: PGSSLMODE=verify-full (+
                                                    PGSSLROOTCERT) applies to every connection whose DSN does not
                                                    set sslmode (docs/security.md).

Triton's HTTP endpoint has no TLS of its own (upstream: put a TLS-terminating proxy in front); see docs/security.md.
File contents never appear in messages: they name the variable and path only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fulqrun_ml.errors import ServingError

CERT_ENV = "FULQRUN_TRITON_TLS_CERT"
KEY_ENV = "FULQRUN_TRITON_TLS_KEY"
CLIENT_CA_ENV = "FULQRUN_TRITON_TLS_CLIENT_CA"
CA_ENV = "FULQRUN_TRITON_TLS_CA"
CLIENT_CERT_ENV = "FULQRUN_TRITON_TLS_CLIENT_CERT"
CLIENT_KEY_ENV = "FULQRUN_TRITON_TLS_CLIENT_KEY"
REQUIRE_ENV = "FULQRUN_REQUIRE_TLS"


class TLSConfigError(ServingError):
    """A TLS setting names a missing, unreadable, malformed or insecure file. Never holds the file's content."""


def tls_required(env: Mapping[str, str] | None = None) -> bool:
    """Whether $FULQRUN_REQUIRE_TLS asks to refuse plaintext connections (1/true/yes)."""
    env = os.environ if env is None else env
    return env.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def require_tls_url(url: str, what: str, env: Mapping[str, str] | None = None) -> str:
    """`url` unchanged, unless TLS is required and its scheme is plaintext redis:// (a unix socket never leaves
    the host, so it stays allowed)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if tls_required(env) and scheme == "redis":
        raise TLSConfigError(f"{what} is a plaintext redis:// URL but {REQUIRE_ENV} is set: use rediss://")
    return url


def _certificates(path: Path, where: str) -> list[x509.Certificate]:
    data = _read(path, where)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise TLSConfigError(f"{where}: {path} holds no PEM certificate")
    return certs


def _private_key(path: Path, where: str) -> Any:
    mode = path.stat().st_mode if path.is_file() else 0
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TLSConfigError(
            f"{where}: private key file {path} is readable by group or others (mode {stat.S_IMODE(mode):o}); "
            "chmod 600 it"
        )
    data = _read(path, where)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise TLSConfigError(f"{where}: {path} is not an unencrypted PEM private key") from None


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TLSConfigError(f"{where}: file {path} does not exist") from None
    except OSError as err:
        raise TLSConfigError(f"{where}: cannot read {path}: {err.strerror}") from None


def _key_pair(cert: Path, key: Path, cert_where: str, key_where: str) -> None:
    """Refuse a key that does not belong to the certificate (the first one of the chain)."""
    leaf = _certificates(cert, cert_where)[0]
    private = _private_key(key, key_where)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*fmt) != private.public_key().public_bytes(*fmt):
        raise TLSConfigError(f"{key_where}: the key in {key} does not belong to the certificate in {cert}")


def _pair_from_env(env: Mapping[str, str], cert_var: str, key_var: str) -> tuple[Path, Path] | None:
    cert, key = env.get(cert_var, "").strip(), env.get(key_var, "").strip()
    if bool(cert) != bool(key):
        missing = key_var if cert else cert_var
        raise TLSConfigError(f"{missing} is not set: {cert_var} and {key_var} go together")
    if not cert:
        return None
    _key_pair(Path(cert), Path(key), cert_var, key_var)
    return Path(cert), Path(key)


@dataclass(frozen=True)
class GrpcServerTLS:
    """What tritonserver needs to serve gRPC over TLS; `client_ca` set = clients must present a certificate."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def __post_init__(self) -> None:
        _key_pair(self.cert, self.key, "TLS certificate", "TLS private key")
        if self.client_ca is not None:
            _certificates(self.client_ca, "TLS client CA")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GrpcServerTLS | None:
        """The server's TLS settings from the environment, or None when $FULQRUN_TRITON_TLS_CERT is unset."""
        env = os.environ if env is None else env
        pair = _pair_from_env(env, CERT_ENV, KEY_ENV)
        client_ca = env.get(CLIENT_CA_ENV, "").strip()
        if pair is None:
            if client_ca:
                raise TLSConfigError(f"{CLIENT_CA_ENV} is set but {CERT_ENV} and {KEY_ENV} are not")
            if tls_required(env):
                raise TLSConfigError(
                    f"{REQUIRE_ENV} is set but {CERT_ENV} and {KEY_ENV} are not: Triton would serve gRPC in plaintext"
                )
            return None
        if client_ca:
            _certificates(Path(client_ca), CLIENT_CA_ENV)
        return cls(pair[0], pair[1], Path(client_ca) if client_ca else None)

    def flags(self) -> list[str]:
        """tritonserver's flags for this setting (Triton reads the root cert only in mutual mode)."""
        if self.client_ca is None:
            return ["--grpc-use-ssl=true", f"--grpc-server-cert={self.cert}", f"--grpc-server-key={self.key}"]
        return [
            "--grpc-use-ssl-mutual=true",
            f"--grpc-server-cert={self.cert}",
            f"--grpc-server-key={self.key}",
            f"--grpc-root-cert={self.client_ca}",
        ]


@dataclass(frozen=True)
class GrpcClientTLS:
    """What a tritonclient gRPC client needs: the root that signed the server, optionally its own key pair."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        _certificates(self.ca, "TLS CA")
        if (self.cert is None) != (self.key is None):
            raise TLSConfigError("a TLS client certificate and its key go together")
        if self.cert is not None and self.key is not None:
            _key_pair(self.cert, self.key, "TLS client certificate", "TLS client key")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GrpcClientTLS | None:
        """The client's TLS settings from the environment, or None when $FULQRUN_TRITON_TLS_CA is unset."""
        env = os.environ if env is None else env
        ca = env.get(CA_ENV, "").strip()
        pair = _pair_from_env(env, CLIENT_CERT_ENV, CLIENT_KEY_ENV)
        if not ca:
            if pair is not None:
                raise TLSConfigError(f"{CLIENT_CERT_ENV} is set but {CA_ENV} is not")
            if tls_required(env):
                raise TLSConfigError(f"{REQUIRE_ENV} is set but {CA_ENV} is not: the gRPC client would talk plaintext")
            return None
        _certificates(Path(ca), CA_ENV)
        return cls(Path(ca), *(pair or (None, None)))

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of tritonclient's gRPC `InferenceServerClient` (sync and asyncio alike)."""
        options: dict[str, Any] = {"ssl": True, "root_certificates": str(self.ca)}
        if self.cert is not None and self.key is not None:
            options.update(certificate_chain=str(self.cert), private_key=str(self.key))
        return options


def grpc_client_options(tls: GrpcClientTLS | None = None) -> dict[str, Any]:
    """tritonclient gRPC options: `tls`, else the environment's settings, else plain gRPC ({})."""
    tls = tls or GrpcClientTLS.from_env()
    return tls.client_options() if tls is not None else {}
