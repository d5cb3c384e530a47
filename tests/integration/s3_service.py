"""A local S3-compatible server for tests: moto's standalone `moto_server` (a real HTTP S3 API in its own
process), with the AWS_* environment boto3 and Triton read, and an object-store registry on a fresh bucket.
Import the fixtures into a test module: `from tests.integration.s3_service import registry, s3_endpoint`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fulqrun_ml.registry.object_store import ObjectRegistry
from fulqrun_ml.serving.server import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "fulqrun-registry"


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto_server on a free loopback port, one per session (with its bucket); the environment is restored
    afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in (*CREDENTIALS, "AWS_ENDPOINT_URL")}
    os.environ.update({**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "moto_server did not start"
                time.sleep(0.1)
        ObjectRegistry(f"s3://{BUCKET}").client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def registry(s3_endpoint):
    """A registry under a prefix of its own per test module: modules share the server, not their objects."""
    return ObjectRegistry(f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}")
