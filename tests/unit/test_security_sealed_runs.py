"""A real training run's snapshots sealed at rest: no Parquet plaintext is left in the run directory, export (which
reads holdout.parquet for its parity check) and the version's reference rows work from the sealed files, and
`fulqrun-ml models seal-snapshots` / `rotate-keys` seal and re-encrypt them so the old key can be retired.

Fast: it reuses the session's `trained_run` (tests/conftest.py) on a copy of its directory. The writer path
(`train` itself with FULQRUN_ENCRYPT_AT_REST=1, then a full export) is the extended test at the bottom."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.crypto.envelope import AT_REST_ENV, EncryptionError, key_id_of
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, new_key
from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.export.package import export_run
from fulqrun_ml.registry.commands import models_main
from fulqrun_ml.registry.run_record import version_holdout_path
from tests.conftest import FAST_TRAINER

K1, K2 = new_key(), new_key()


def parquet_plaintext(directory: Path) -> list[str]:
    """Files under `directory` holding Parquet magic `PAR1` anywhere (sealed files never do, by AES-GCM)."""
    return sorted(
        str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and b"PAR1" in p.read_bytes()
    )


@pytest.fixture
def sealed_run(trained_run, tmp_path, monkeypatch, capsys) -> Path:
    run = tmp_path / "logs" / "run"
    shutil.copytree(trained_run["run_dir"], run)
    assert "holdout.parquet" in parquet_plaintext(run)  # the scan sees the plain run: it is able to fail
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k1:{K1}")
    monkeypatch.setenv(AT_REST_ENV, "1")
    plain = {p.name for p in run.iterdir() if p.name.endswith(".parquet")}
    assert models_main(["--models-dir", str(tmp_path / "models"), "seal-snapshots"]) == 0  # runs: logs/ next to it
    assert f"{len(plain)} plain snapshot file(s) under {tmp_path / 'logs'} sealed" in capsys.readouterr().out
    assert {p.name for p in run.iterdir() if p.name.endswith(".enc")} == {f"{name}.enc" for name in plain}
    return run


def test_a_sealed_run_exports_rotates_and_leaves_no_plaintext(sealed_run, trained_run, tmp_path, monkeypatch, capsys):
    assert parquet_plaintext(sealed_run) == []
    version = tmp_path / "version"  # a version whose lineage names the sealed run: monitors find its reference rows
    version.mkdir()
    (version / "lineage.json").write_text(json.dumps({"run_dir": str(sealed_run)}))
    assert version_holdout_path(version) == sealed_run / "holdout.parquet"
    plain = pd.read_parquet(Path(trained_run["run_dir"]) / "holdout.parquet")
    pd.testing.assert_frame_equal(read_snapshot(version_holdout_path(version)), plain)

    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k2:{K2},k1:{K1}")  # new key first: rotate-keys covers the runs too
    assert models_main(["--models-dir", str(tmp_path / "models"), "rotate-keys"]) == 0
    sealed = sorted(sealed_run.rglob("*.parquet.enc"))
    assert f"{len(sealed)} sealed snapshot file(s) under {tmp_path / 'logs'} re-encrypted" in capsys.readouterr().out
    assert {key_id_of(p.read_bytes(), str(p)) for p in sealed} == {"k2"}
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k2:{K2}")  # k1 retired: the run's rows still read
    pd.testing.assert_frame_equal(read_snapshot(sealed_run / "holdout.parquet"), plain)
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k1:{K1}")  # only the retired key: export (which reads the sealed
    # holdout for its parity check; a full export of a sealed run is the extended test) is refused, naming the file
    with pytest.raises(EncryptionError, match=r"holdout\.parquet\.enc was encrypted with key 'k2'"):
        export_run(sealed_run, tmp_path / "models", "deal_win")


@pytest.mark.extended
def test_training_with_encryption_on_writes_only_sealed_snapshots(tmp_path, compose_train, monkeypatch):
    from fulqrun_ml.training.train import train

    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"k1:{K1}")
    monkeypatch.setenv(AT_REST_ENV, "1")
    result = train(compose_train(tmp_path / "run", *FAST_TRAINER, f"paths.root_dir={tmp_path}"))
    run = Path(result["run_dir"])
    assert {"holdout.parquet.enc", "open_deals.parquet.enc"} <= {p.name for p in run.iterdir()}
    assert parquet_plaintext(tmp_path) == []
    export_run(run, tmp_path / "models", "deal_win")
