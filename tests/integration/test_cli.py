"""The `fulqrun-ml` commands as a user runs them: train -> export -> serve (SIGTERM stops it cleanly)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from fulqrun_ml.registry.store import get_version
from fulqrun_ml.serving.server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = [sys.executable, "-m", "fulqrun_ml.cli"]


def test_train_export_serve_from_the_command_line(tmp_path):
    env = {**os.environ, "FULQRUN_ROOT": str(tmp_path)}
    tiny = ["data.source.n_opportunities=1200", "data.source.n_companies=200", "trainer.max_epochs=1", "logger=none"]
    subprocess.run([*CLI, "train", *tiny], check=True, env=env, capture_output=True, timeout=300)
    run_dirs = list((tmp_path / "logs" / "deal_win" / "runs").glob("*/run_info.json"))
    assert len(run_dirs) == 1

    out = subprocess.run(
        [*CLI, "export", "--models-dir", str(tmp_path / "models")],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert "published deal_win v1" in out.stdout
    assert get_version(tmp_path / "models", "deal_win").version == 1

    port = free_port()
    ports = [f"serving.http_port={port}", f"serving.grpc_port={free_port()}", f"serving.metrics_port={free_port()}"]
    server = subprocess.Popen([*CLI, "serve", *ports], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/models/deal_win/ready", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, server.stdout.read().decode()
            time.sleep(0.5)
        else:
            pytest.fail("serve did not become ready")
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert b"server stopped" in server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
    assert Path(tmp_path / "models" / "triton_repo" / "deal_win" / "config.pbtxt").is_file()


def test_errors_are_messages_not_tracebacks(tmp_path):
    out = subprocess.run(
        [*CLI, "export", "--run-dir", str(tmp_path / "nope"), "--models-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
