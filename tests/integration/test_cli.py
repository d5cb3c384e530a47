"""The `fulqrun-ml` commands as a user runs them: train -> export (x2; a plain export picks the newest run of its
task, deal_win, from the run records) -> reproduce -> models promote -> serve -> serve rollback on the live server
-> SIGTERM stops it cleanly.

The long-running `serve` and one failing command run as real `python -m fulqrun_ml.cli` processes (the entry
point, the exit status, SIGTERM); the one-shot commands run through the same `main` in-process (run_cli in
tests/conftest.py) with the same FULQRUN_ROOT and working directory, because each subprocess pays ~10 s of CPU
for its imports."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from fulqrun_ml.registry.alias_state import resolve_alias
from fulqrun_ml.serving.server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = [sys.executable, "-m", "fulqrun_ml.cli"]


def wait_until(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def version_ready(port: int, version: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/v2/models/deal_win/versions/{version}/ready", timeout=1).ok
    except requests.RequestException:
        return False


def test_train_export_promote_serve_rollback_from_the_command_line(tmp_path, run_cli, monkeypatch):
    env = {**os.environ, "FULQRUN_ROOT": str(tmp_path)}
    monkeypatch.chdir(tmp_path)

    def cli(*args: str) -> str:
        code, stdout, stderr = run_cli(*args, env={"FULQRUN_ROOT": str(tmp_path)})
        assert code == 0, stderr[-2000:]
        return stdout

    tiny = ["data.source.n_opportunities=1200", "data.source.n_companies=200", "trainer.max_epochs=1", "logger=none"]
    cli("train", *tiny)
    (run_info,) = (tmp_path / "logs" / "deal_win" / "runs").glob("*/run_info.json")
    # A newer finished run of another task must not be what a plain `export` (task deal_win) picks.
    decoy = tmp_path / "logs" / "lead_conversion" / "runs" / "newer"
    decoy.mkdir(parents=True)
    (decoy / "run_info.json").write_text(json.dumps({**json.loads(run_info.read_text()), "task": "lead_conversion"}))
    out = cli("export")
    assert f"newest finished deal_win run: {run_info.parent}" in out and "published deal_win v1" in out
    assert "published deal_win v2" in cli("export")
    assert "identical" in cli("reproduce", "deal_win", "1")  # retrained from lineage: same data, same metrics
    # A few-epoch test model fails the default fairness gate (configs/governance/default.yaml); overriding it
    # also exercises the audited override path.
    override = ("--override-fairness", "--reason", "tiny test model")
    cli("models", "promote", "deal_win", "1", *override)
    cli("models", "promote", "deal_win", "2", *override)
    assert resolve_alias(tmp_path / "models", "deal_win", "production") == 2
    assert "v2" in cli("models", "list", "deal_win")

    port = free_port()
    ports = [f"serving.http_port={port}", f"serving.grpc_port={free_port()}", f"serving.metrics_port={free_port()}"]
    server = subprocess.Popen(
        [*CLI, "serve", *ports], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: version_ready(port, 2) or server.poll() is not None)
        assert server.poll() is None
        out = cli("serve", "rollback", "deal_win", f"serving.http_port={port}")
        assert "now serves deal_win v1" in out
        wait_until(lambda: version_ready(port, 1) and not version_ready(port, 2))
        assert resolve_alias(tmp_path / "models", "deal_win", "production") == 1
        audit = (tmp_path / "models" / "deal_win" / "audit.jsonl").read_text()
        assert "rollback" in audit
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert b"server stopped" in server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
    assert (tmp_path / "models" / "triton_repo" / "deal_win" / "config.pbtxt").is_file()


def test_errors_are_messages_not_tracebacks(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli("export", "--run-dir", str(tmp_path / "nope"), "--models-dir", str(tmp_path))
    assert code != 0
    assert "Traceback" not in stderr
    # A real process: `main`'s status is the exit code and the message is on stderr.
    out = subprocess.run(
        [*CLI, "export", "--task", "lead_conversion"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FULQRUN_ROOT": str(tmp_path)},
    )
    assert out.returncode == 2 and "no finished lead_conversion run" in out.stderr and "Traceback" not in out.stderr
    code, _, stderr = run_cli("serve", "version=7", env={"FULQRUN_ROOT": str(tmp_path)})
    assert code == 2 and "error:" in stderr and "Traceback" not in stderr
