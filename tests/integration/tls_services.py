"""PostgreSQL and Redis servers that speak only TLS, with a password, for the TLS tests.

Why their own servers and not the session's `pg_dsn` / `redis_url`: those are plain-TCP, trust-auth servers other
tests share; turning TLS on there would change what every later test talks to. PostgreSQL comes from the
project's scripts/postgres.sh (then `ssl = on` and a pg_hba.conf that rejects unencrypted TCP, reloaded without a
restart); Redis is started with `--port 0 --tls-port N`, so its only TCP port speaks TLS."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from fulqrun_ml.serving.tls_selfsigned import PKI

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
PG_HBA = """\
local all all trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostnossl all all 127.0.0.1/32 reject
"""


@dataclass(frozen=True)
class TLSServer:
    host: str
    port: int
    password: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _owned_copy(source: Path, target: Path, like: Path) -> None:
    """Copy a cert/key next to the server's data, owned by the server's user, mode 0600 (PostgreSQL insists)."""
    shutil.copyfile(source, target)
    owner = like.stat()
    os.chown(target, owner.st_uid, owner.st_gid)
    os.chmod(target, 0o600)


@contextmanager
def tls_postgres(pki: PKI, password: str) -> Iterator[TLSServer]:
    """A throwaway cluster: TLS with `pki`'s server certificate, password auth, unencrypted TCP rejected."""
    data_dir = Path(f"/tmp/fulqrun-pg-tls-{uuid.uuid4().hex[:8]}")  # /tmp: reachable by the postgres user
    started = subprocess.run(
        [str(SCRIPTS / "postgres.sh"), "start", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if started.returncode != 0:
        pytest.fail(f"postgres.sh could not start a cluster: {started.stderr[-800:]}")
    try:
        plain_dsn = started.stdout.strip()
        _owned_copy(pki.cert, data_dir / "tls.crt", data_dir)
        _owned_copy(pki.key, data_dir / "tls.key", data_dir)
        (data_dir / "pg_hba.conf").write_text(PG_HBA)
        with psycopg.connect(plain_dsn, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{password}'")
            conn.execute(f"ALTER SYSTEM SET ssl_cert_file = '{data_dir / 'tls.crt'}'")
            conn.execute(f"ALTER SYSTEM SET ssl_key_file = '{data_dir / 'tls.key'}'")
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("SELECT pg_reload_conf()")
        port = int(plain_dsn.rsplit(":", 1)[1].split("/")[0])
        server = TLSServer("127.0.0.1", port, password)
        _wait(lambda: _pg_tls_ready(server, pki), "PostgreSQL did not start TLS", data_dir / "server.log")
        yield server
    finally:
        subprocess.run(
            [str(SCRIPTS / "postgres.sh"), "stop", "--data-dir", str(data_dir), "--purge"],
            capture_output=True,
            timeout=120,
        )


def _pg_tls_ready(server: TLSServer, pki: PKI) -> bool:
    try:
        with psycopg.connect(
            host=server.host, port=server.port, user="postgres", password=server.password, dbname="postgres",
            sslmode="verify-full", sslrootcert=str(pki.ca), connect_timeout=2,
        ):  # fmt: skip
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def tls_redis(pki: PKI, password: str, tmp: Path) -> Iterator[TLSServer]:
    """redis-server whose only TCP port speaks TLS (client certificates not required), `requirepass` set."""
    port = _free_port()
    data_dir = tmp / f"redis-tls-{port}"
    data_dir.mkdir(parents=True)
    config = data_dir / "redis.conf"  # the password in a 0600 file, not on the command line
    config.write_text(
        f"bind 127.0.0.1\nport 0\ntls-port {port}\ntls-cert-file {pki.cert}\ntls-key-file {pki.key}\n"
        f"tls-ca-cert-file {pki.ca}\ntls-auth-clients no\nrequirepass {password}\ndir {data_dir}\n"
        f'save ""\nappendonly no\nlogfile {data_dir / "redis.log"}\n'
    )
    os.chmod(config, 0o600)
    process = subprocess.Popen(["redis-server", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = TLSServer("127.0.0.1", port, password)
    try:
        url = f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={pki.ca}"
        _wait(lambda: _redis_ready(url), "redis-server did not answer over TLS", data_dir / "redis.log")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def _redis_ready(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _wait(ready, what: str, log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-800:] if log.exists() else "(no log)"
    pytest.fail(f"{what} within {timeout_s:.0f}s:\n{tail}")
