"""`governance forget` and `scan` on a W&B offline run written by wandb 0.31 itself (erasure_wandb_run/, made by
its generate.py; writing one here would cost ~10 s of wandb-core start-up per test).

The checks do not use the erasure's code: the run log is read back with the project's own reader
(training/wandb_offline.py, what `runs compare` uses) and every file is searched byte-wise for the subject.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fulqrun_ml.erasure import files as erasure_files
from fulqrun_ml.erasure.cli import main
from fulqrun_ml.training.wandb_offline import load_offline_run, read_records
from tests.integration.erasure_tiny import COMPANY, EMAIL, OTHER_DEAL, SECRETS, store_args, write_tiny_crm

FIXTURE = Path(__file__).parent / "erasure_wandb_run"


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    """A run directory holding the fixture's W&B run, and the small CRM export it was logged from."""
    write_tiny_crm(tmp_path)
    run = tmp_path / "runs" / "run1" / "wandb"
    run.mkdir(parents=True)
    for source in FIXTURE.glob("offline-run-*"):
        shutil.copytree(source, run / source.name)
    return tmp_path


def _forget(root: Path) -> tuple[int, dict]:
    out = root / "reports"
    rc = main(
        ["forget", "--company", COMPANY, *store_args(root), "--models-dir", str(root / "models"), "--out", str(out)]
    )
    reports = sorted(out.glob("*.json"))
    return rc, (json.loads(reports[-1].read_text()) if reports else {})


def _run_dir(root: Path) -> Path:
    return next((root / "runs" / "run1" / "wandb").glob("offline-run-*"))


def _mentions(root: Path) -> list[str]:
    """Files of the run whose bytes hold any of the subject's ids, email or names."""
    return [
        str(p) for p in _run_dir(root).rglob("*") if p.is_file() and any(s.encode() in p.read_bytes() for s in SECRETS)
    ]


def test_forget_rewrites_the_run_log_and_files_and_the_run_still_reads(
    run_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(run_root)
    before = load_offline_run(run)
    assert len(_mentions(run_root)) >= 4  # run log, table, output.log, debug.log
    rc = main(["scan", *store_args(run_root), "--json", str(run_root / "scan.json")])
    found = json.loads((run_root / "scan.json").read_text())["stores"]["wandb"]
    assert rc == 1 and found["findings"].get("email", 0) >= 1 and found["files_with_findings"] >= 2
    assert EMAIL not in capsys.readouterr().out

    rc, report = _forget(run_root)

    assert rc == 0 and report["erased"] is True and report["wandb_runs_flagged"] == 0
    assert report["stores"]["wandb"]["hits_before"] > 0 and report["stores"]["wandb"]["hits_after"] == 0
    assert _mentions(run_root) == []
    after = load_offline_run(run)  # the project's own reader: the log is still a valid run
    assert len(after.records) == len(before.records) and after.run_id == before.run_id
    assert after.history["loss"] == before.history["loss"] and after.summary["champion_contact"] == "[ERASED]"
    table = json.loads(next(run.rglob("*.table.json")).read_text())
    assert [row[0] for row in table["data"]] == [OTHER_DEAL]  # the subject's row went, the other stayed
    log_text = json.dumps([after.config, after.history, after.summary])
    assert "[ERASED]" in log_text and not [s for s in SECRETS if s in log_text]
    rc = main(["scan", *store_args(run_root), "--json", str(run_root / "scan.json")])
    assert json.loads((run_root / "scan.json").read_text())["stores"]["wandb"]["findings"].get("email", 0) == 0


def test_a_run_log_that_does_not_verify_is_flagged_not_rewritten(run_root: Path) -> None:
    """One flipped byte breaks a chunk CRC: the log is left as it is, the run flagged and the forget not clean."""
    log = next(_run_dir(run_root).glob("*.wandb"))
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0x01
    log.write_bytes(bytes(data))

    rc, report = _forget(run_root)

    assert rc == 1 and report["erased"] is False and report["wandb_runs_flagged"] == 1
    assert log.read_bytes() == bytes(data) and report["stores"]["wandb"]["hits_after"] > 0
    assert report["stores"]["wandb"]["hits_after"] < report["stores"]["wandb"]["hits_before"]  # the rest erased


def test_a_crash_between_run_files_is_finished_by_a_rerun(run_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = erasure_files.publish, []

    def crash_on_second(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill between two files")
        real(path, data)

    monkeypatch.setattr(erasure_files, "publish", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        _forget(run_root)
    read_records(next(_run_dir(run_root).glob("*.wandb")))  # whole: the old log or the new one
    assert not list(run_root.rglob(".*.tmp-*"))
    monkeypatch.setattr(erasure_files, "publish", real)
    rc, report = _forget(run_root)
    assert rc == 0 and report["erased"] is True and _mentions(run_root) == []
