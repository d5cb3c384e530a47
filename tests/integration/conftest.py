"""Services shared by the integration tests: a Redis server and a PostgreSQL cluster, each started once per
session by the project's own scripts (scripts/redis.sh, scripts/postgres.sh) on 127.0.0.1 and a free port, and
removed afterwards. Tests that need a clean database create their own schema or database inside them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _service(script: str, prefix: str) -> Iterator[tuple[str, str]]:
    data_dir = f"/tmp/{prefix}-{uuid.uuid4().hex[:8]}"  # /tmp: reachable by the postgres user
    started = subprocess.run(
        [str(SCRIPTS / script), "start", "--data-dir", data_dir], capture_output=True, text=True, timeout=600
    )
    if started.returncode != 0:
        pytest.fail(f"{script} could not install or start its server: {started.stderr[-800:]}")
    try:
        yield started.stdout.strip(), data_dir
    finally:
        subprocess.run(
            [str(SCRIPTS / script), "stop", "--data-dir", data_dir, "--purge"], capture_output=True, timeout=120
        )


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """redis://127.0.0.1:<port>/0 of a throwaway Redis server for the whole session."""
    for url, _ in _service("redis.sh", "fulqrun-redis-test"):
        yield url


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[tuple[str, str]]:
    """(DSN, data dir) of a throwaway PostgreSQL cluster for the whole session (trust auth, loopback). The data
    dir lets the script's own tests (test_postgres_source.py) run `status`/`start` against it: one initdb a
    session, not one per module."""
    yield from _service("postgres.sh", "fulqrun-pg-session")


@pytest.fixture(scope="session")
def pg_dsn(pg_cluster: tuple[str, str]) -> str:
    """DSN of the session's PostgreSQL cluster."""
    return pg_cluster[0]
