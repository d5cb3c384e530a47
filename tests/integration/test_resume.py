"""Kill -9 mid-training, resume from last.ckpt, reach the same final metrics as an uninterrupted run.

Tolerance: exact equality of every holdout metric and of the final weights (CPU, `trainer.deterministic=true`,
end-of-epoch checkpoints, RNG states restored by `RNGStateCheckpoint`). Both runs execute the real CLI
(`python -m fulqrun_ml.cli train ...`) in subprocesses, like a user's interrupted job.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = [sys.executable, "-m", "fulqrun_ml.cli", "train"]
TINY = [
    "data.source.n_opportunities=1500",
    "data.source.n_companies=300",
    "data.source.n_reps=10",
    "trainer.max_epochs=6",
    "trainer.enable_progress_bar=false",
    "callbacks.early_stopping.patience=10",  # all six epochs run in both, so the kill lands mid-run
    "logger=none",
]
TIMEOUT_S = 300


def train_cmd(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*CLI, *TINY, f"paths.root_dir={root}", f"hydra.run.dir={run_dir}", *extra]


def env_for(root: Path) -> dict[str, str]:
    return {**os.environ, "FULQRUN_ROOT": str(root), "PYTHONUNBUFFERED": "1"}


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"
    # The reference run, uninterrupted, started first so the two overlap on the CPU.
    full = subprocess.Popen(
        train_cmd(tmp_path, full_dir), env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    victim = subprocess.Popen(
        train_cmd(tmp_path, killed_dir), env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = killed_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + TIMEOUT_S
    while not last.exists():
        assert victim.poll() is None, victim.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_dir / "run_info.json").exists()  # it really died before finishing
    killed_at_epoch = torch.load(last, weights_only=False)["epoch"]
    assert killed_at_epoch < 5

    resumed = subprocess.run(
        train_cmd(tmp_path, killed_dir, "ckpt_path=last"),
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, full_err = full.communicate(timeout=TIMEOUT_S)
    assert full.returncode == 0, full_err.decode()[-3000:]

    info_resumed = json.loads((killed_dir / "run_info.json").read_text())
    info_full = json.loads((full_dir / "run_info.json").read_text())
    assert info_resumed["resumed_from"] == str(last) and info_full["resumed_from"] is None
    assert info_resumed["data_hash"] == info_full["data_hash"]
    assert info_resumed["epochs"] == info_full["epochs"]
    metrics_resumed = json.loads((killed_dir / "metrics.json").read_text())
    metrics_full = json.loads((full_dir / "metrics.json").read_text())
    assert metrics_resumed == metrics_full  # exact, for model, calibrated and not, rep and oracle
    weights_resumed = torch.load(killed_dir / "net_state.pt", weights_only=True)
    weights_full = torch.load(full_dir / "net_state.pt", weights_only=True)
    assert all(torch.equal(weights_resumed[k], weights_full[k]) for k in weights_full)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, run_cli):
    # The same command line, through the CLI's `main` in-process (tests/conftest.py::run_cli): no process to kill here.
    argv = train_cmd(tmp_path, tmp_path / "fresh", "ckpt_path=last", "trainer.max_epochs=1")[len(CLI) :]
    code, _, stderr = run_cli("train", *argv, env={"FULQRUN_ROOT": str(tmp_path)})
    assert code != 0
    assert "ckpt_path=last: no" in stderr and "last.ckpt" in stderr
