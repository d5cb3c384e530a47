"""Run-directory snapshots at rest (data/snapshot_files.py): with `FULQRUN_ENCRYPT_AT_REST=1` no Parquet plaintext
(magic `PAR1`, planted PII) is left on disk, readers decrypt transparently, a wrong key / altered byte / swapped
file is refused naming the file, rotation re-encrypts, and turning encryption off never unseals on rewrite."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.crypto.envelope import AT_REST_ENV, EncryptionError, key_id_of
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, KeyMaterialError, new_key
from fulqrun_ml.data.snapshot_files import (
    SnapshotFileError,
    iter_snapshots,
    read_snapshot,
    read_snapshot_arrays,
    rewrite_snapshot,
    rotate_snapshots,
    seal_snapshots,
    snapshot_exists,
    write_snapshot,
    write_snapshot_arrays,
)
from fulqrun_ml.registry.encryption import encryption_provider

K1, K2 = new_key(), new_key()
PLANTED = "planted.person@example.com"


def frame(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"opportunity_id": np.arange(n), "contact_email": [PLANTED] * n, "amount": np.arange(n) * 1.5})


def plaintext_files(directory) -> list[str]:
    """Every file under `directory` that holds Parquet magic or the planted PII (what a disk reader would get)."""
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and (b"PAR1" in p.read_bytes() or PLANTED.encode() in p.read_bytes())
    )


@pytest.fixture
def sealed(monkeypatch):
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k1:{K1}")
    monkeypatch.setenv(AT_REST_ENV, "1")


def test_sealed_snapshots_leave_no_plaintext_and_read_back(tmp_path, sealed):
    run = tmp_path / "run"
    (run / "holdout.parquet").parent.mkdir()
    (run / "holdout.parquet").write_bytes(frame().to_parquet())  # a stale plain file from before encryption
    written = [write_snapshot(frame(), run / "holdout.parquet"), write_snapshot(frame(2), run / "open_deals.parquet")]
    assert [p.name for p in written] == ["holdout.parquet.enc", "open_deals.parquet.enc"]
    assert plaintext_files(tmp_path) == []
    assert sorted(p.name for p in run.iterdir()) == ["holdout.parquet.enc", "open_deals.parquet.enc"]
    pd.testing.assert_frame_equal(read_snapshot(run / "holdout.parquet"), frame())
    pd.testing.assert_frame_equal(
        read_snapshot(run / "open_deals.parquet.enc", columns=["amount"]), frame(2)[["amount"]]
    )
    assert snapshot_exists(run / "holdout.parquet") and not snapshot_exists(run / "customers.parquet")
    assert [p.name for p in iter_snapshots(tmp_path)] == ["holdout.parquet", "open_deals.parquet"]


def test_the_plaintext_scan_catches_a_plain_snapshot(tmp_path, monkeypatch):
    """The scan above is able to fail: with encryption off the same writes leave PAR1 and the PII on disk."""
    monkeypatch.delenv(AT_REST_ENV, raising=False)
    write_snapshot(frame(), tmp_path / "holdout.parquet")
    assert plaintext_files(tmp_path) == ["holdout.parquet"]
    pd.testing.assert_frame_equal(read_snapshot(tmp_path / "holdout.parquet"), frame())


def test_wrong_key_tampering_and_swaps_are_refused_naming_the_file(tmp_path, sealed, monkeypatch):
    holdout = write_snapshot(frame(), tmp_path / "holdout.parquet")
    open_deals = write_snapshot(frame(2), tmp_path / "open_deals.parquet")
    blob = bytearray(holdout.read_bytes())
    blob[-5] ^= 0x01
    holdout.write_bytes(bytes(blob))
    with pytest.raises(EncryptionError, match=r"holdout\.parquet\.enc does not decrypt with key 'k1'.*altered"):
        read_snapshot(tmp_path / "holdout.parquet")
    holdout.write_bytes(open_deals.read_bytes())  # a ciphertext copied over another snapshot's name
    with pytest.raises(EncryptionError, match=r"holdout\.parquet\.enc .*belongs to another file"):
        read_snapshot(tmp_path / "holdout.parquet")
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k2:{K2}")  # k1 retired: the file names the key it needs
    with pytest.raises(EncryptionError, match=r"open_deals\.parquet\.enc was encrypted with key 'k1'"):
        read_snapshot(tmp_path / "open_deals.parquet")
    monkeypatch.delenv(ENCRYPTION_KEYS_ENV)
    with pytest.raises(
        SnapshotFileError, match=rf"open_deals\.parquet\.enc is encrypted at rest; set {ENCRYPTION_KEYS_ENV}"
    ):
        read_snapshot(tmp_path / "open_deals.parquet")


def test_on_without_keys_refuses_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv(AT_REST_ENV, "1")
    monkeypatch.delenv(ENCRYPTION_KEYS_ENV, raising=False)
    monkeypatch.delenv(ENCRYPTION_KEYS_ENV + "_FILE", raising=False)
    with pytest.raises(KeyMaterialError, match=AT_REST_ENV):
        write_snapshot(frame(), tmp_path / "holdout.parquet")
    assert list(tmp_path.iterdir()) == []


def test_not_parquet_and_missing_files_name_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(AT_REST_ENV, raising=False)
    (tmp_path / "holdout.parquet").write_text("not parquet")
    with pytest.raises(SnapshotFileError, match=r"holdout\.parquet is not a readable Parquet snapshot"):
        read_snapshot(tmp_path / "holdout.parquet")
    with pytest.raises(FileNotFoundError, match=r"customers\.parquet"):
        read_snapshot(tmp_path / "customers.parquet")


def test_rotation_and_sealing_old_snapshots(tmp_path, monkeypatch):
    monkeypatch.delenv(AT_REST_ENV, raising=False)
    write_snapshot(frame(), tmp_path / "a" / "holdout.parquet")  # written before encryption was turned on
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k1:{K1}")
    assert [p.name for p in seal_snapshots(tmp_path, encryption_provider())] == ["holdout.parquet.enc"]
    (tmp_path / "a" / "holdout.parquet").write_bytes(frame(9).to_parquet())  # a crash left a plaintext behind...
    os.utime(tmp_path / "a" / "holdout.parquet", ns=(0, 0))  # ...older than its ciphertext: removed, not sealed
    assert [p.name for p in seal_snapshots(tmp_path, encryption_provider())] == ["holdout.parquet.enc"]
    monkeypatch.setenv(AT_REST_ENV, "1")
    write_snapshot(frame(2), tmp_path / "b" / "open_deals.parquet")
    assert plaintext_files(tmp_path) == []
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k2:{K2},k1:{K1}")  # new key first, old one still decrypts
    assert rotate_snapshots(tmp_path, encryption_provider()) == 2
    assert rotate_snapshots(tmp_path, encryption_provider()) == 0
    assert {key_id_of(p.read_bytes(), str(p)) for p in tmp_path.rglob("*.enc")} == {"k2"}
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k2:{K2}")  # k1 retired: nothing needs it any more
    pd.testing.assert_frame_equal(read_snapshot(tmp_path / "a" / "holdout.parquet"), frame())


def test_rewrite_keeps_a_sealed_snapshot_sealed_after_encryption_is_switched_off(tmp_path, sealed, monkeypatch):
    write_snapshot(frame(), tmp_path / "holdout.parquet")
    monkeypatch.setenv(AT_REST_ENV, "0")
    rewrite_snapshot(frame(2), tmp_path / "holdout.parquet")  # e.g. erasure removing rows
    assert plaintext_files(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["holdout.parquet.enc"]
    pd.testing.assert_frame_equal(read_snapshot(tmp_path / "holdout.parquet"), frame(2))


def test_monitor_drift_reads_a_sealed_reference_and_names_the_option(tmp_path, sealed, monkeypatch):
    from fulqrun_ml.monitoring.commands import read_frame
    from fulqrun_ml.monitoring.drift import MonitoringInputError

    write_snapshot(frame(), tmp_path / "holdout.parquet")
    pd.testing.assert_frame_equal(read_frame(str(tmp_path / "holdout.parquet"), "--reference"), frame())
    pd.testing.assert_frame_equal(read_frame(str(tmp_path / "holdout.parquet.enc"), "--reference"), frame())
    monkeypatch.delenv(ENCRYPTION_KEYS_ENV)
    with pytest.raises(MonitoringInputError, match=r"--reference.*holdout\.parquet\.enc is encrypted at rest"):
        read_frame(str(tmp_path / "holdout.parquet"), "--reference")


def test_sequence_arrays_are_sealed_too(tmp_path, sealed, monkeypatch):
    """holdout_sequences.npz (a sequence model's event tensors, row order shared with the holdout) takes the same path:
    sealed, no zip/npz magic on disk, read back equal, a swapped file refused, rotated with the Parquet snapshots."""
    arrays = {"event_type": np.arange(12, dtype=np.int64).reshape(3, 4), "dt": np.linspace(0, 1, 12).reshape(3, 4)}
    write_snapshot(frame(), tmp_path / "holdout.parquet")
    sealed_npz = write_snapshot_arrays(arrays, tmp_path / "holdout_sequences.npz")
    other = write_snapshot_arrays(arrays, tmp_path / "open_deals_sequences.npz")
    assert sealed_npz.name == "holdout_sequences.npz.enc" and not sealed_npz.read_bytes().startswith(b"PK")
    back = read_snapshot_arrays(tmp_path / "holdout_sequences.npz")
    assert sorted(back) == sorted(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    assert [p.name for p in iter_snapshots(tmp_path)] == [
        "holdout.parquet", "holdout_sequences.npz", "open_deals_sequences.npz"
    ]  # fmt: skip
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k2:{K2},k1:{K1}")
    assert rotate_snapshots(tmp_path, encryption_provider()) == 3
    sealed_npz.write_bytes(other.read_bytes())
    with pytest.raises(EncryptionError, match=r"holdout_sequences\.npz\.enc .*belongs to another file"):
        read_snapshot_arrays(tmp_path / "holdout_sequences.npz")
