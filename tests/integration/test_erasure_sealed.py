"""`governance forget` and `scan` on run-directory snapshots sealed at rest (`holdout.parquet.enc`, written by
data/snapshot_files.write_snapshot with FULQRUN_ENCRYPT_AT_REST=1): found, erased, still sealed with the key
they had, never unsealed on disk; without the keyring the forget refuses before changing anything.

The checks read the sealed file back with the project's own reader (read_snapshot) and search every file's
bytes for the subject and for Parquet's magic (a plaintext copy left behind).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.crypto.envelope import AT_REST_ENV, key_id_of
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, new_key
from fulqrun_ml.data.snapshot_files import read_snapshot, write_snapshot
from fulqrun_ml.erasure.cli import main
from tests.integration.erasure_tiny import COMPANY, DEAL, EMAIL, OTHER_DEAL, SECRETS, store_args, write_tiny_crm

KEYS = f"k1:{new_key()}"


@pytest.fixture
def sealed_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(AT_REST_ENV, "1")
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, KEYS)
    write_tiny_crm(tmp_path)
    frame = pd.DataFrame(
        {"opportunity_id": [DEAL, OTHER_DEAL], "note": [f"champion {EMAIL}", "no contact yet"], "won": [1.0, 0.0]}
    )
    written = write_snapshot(frame, tmp_path / "runs" / "run1" / "holdout.parquet")
    assert written.name == "holdout.parquet.enc"
    return tmp_path


def _forget(root: Path) -> tuple[int, dict]:
    out = root / "reports"
    rc = main(["forget", "--company", COMPANY, *store_args(root), "--models-dir", str(root / "m"), "--out", str(out)])
    reports = sorted(out.glob("*.json"))
    return rc, (json.loads(reports[-1].read_text()) if reports else {})


def _plain_or_named(root: Path) -> list[str]:
    return [
        p.name
        for p in (root / "runs").rglob("*")
        if p.is_file() and (b"PAR1" in p.read_bytes() or any(s.encode() in p.read_bytes() for s in SECRETS))
    ]


def test_a_sealed_snapshot_is_scanned_erased_and_stays_sealed(
    sealed_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = sealed_root / "runs" / "run1" / "holdout.parquet.enc"
    assert _plain_or_named(sealed_root) == []  # sealed: nothing readable on disk to begin with
    rc = main(["scan", *store_args(sealed_root), "--json", str(sealed_root / "scan.json")])
    found = json.loads((sealed_root / "scan.json").read_text())["stores"]["snapshots"]
    assert rc == 1 and found["findings"].get("email") == 1 and EMAIL not in capsys.readouterr().out

    rc, report = _forget(sealed_root)

    assert rc == 0 and report["erased"] is True
    assert report["stores"]["snapshots"]["hits_before"] == 1 and report["stores"]["snapshots"]["hits_after"] == 0
    assert sorted(p.name for p in sealed.parent.iterdir()) == ["holdout.parquet.enc"]  # no plaintext sibling
    assert _plain_or_named(sealed_root) == [] and key_id_of(sealed.read_bytes(), "x") == "k1"
    kept = read_snapshot(sealed_root / "runs" / "run1" / "holdout.parquet")
    assert kept["opportunity_id"].tolist() == [OTHER_DEAL] and kept["note"].tolist() == ["no contact yet"]


def test_without_the_keyring_the_forget_refuses_and_changes_nothing(
    sealed_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: p.read_bytes() for p in sealed_root.rglob("*") if p.is_file()}
    monkeypatch.delenv(ENCRYPTION_KEYS_ENV)
    monkeypatch.delenv(AT_REST_ENV)
    rc, report = _forget(sealed_root)
    err = capsys.readouterr().err
    assert rc == 2 and report == {} and "holdout.parquet.enc" in err and ENCRYPTION_KEYS_ENV in err
    assert "Traceback" not in err and COMPANY not in err
    assert before == {p: p.read_bytes() for p in sealed_root.rglob("*") if p.is_file()}
