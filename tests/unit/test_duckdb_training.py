"""Training from the DuckDB-built snapshot (`data.snapshot_engine=duckdb`) is training on the same data.

The engine builds the deal-win frame with the DuckDB executions of the pandas definitions, reads it back in the
pandas builders' row order, and memory-maps the encoded tensors. So on one CRM the two engines must give the
same split frames (values to float rounding: days are computed from microseconds in SQL), the same encoded
tensors, the same fitted FeatureSpec and the same scoring rows; and a model trained on pandas-built data must
warm-start on DuckDB-built data (identical vocabularies). The CRM's times are at the contract's microsecond
resolution (what validation and Parquet exports hold), and the grid is coarse (every 35 days) to stay fast.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from fulqrun_ml.data import snapshots_duckdb
from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.data.simulator_scale import _canonical_times
from fulqrun_ml.datamodules.duckdb_frame import SnapshotEngineError
from fulqrun_ml.datamodules.memmap import MemmapBatchDataset, write_arrays
from fulqrun_ml.datamodules.tabular import SPLITS, BatchDictDataset, DealWinDataModule, TabularSnapshotDataModule
from fulqrun_ml.datamodules.task_builders import LeadConversionBuilder
from fulqrun_ml.training.train import train

GRID = {"snapshot_every_days": 35}


@pytest.fixture(scope="module")
def crm_us() -> SimulatedCRM:
    crm = simulate_crm(n_opportunities=400, n_companies=120, n_reps=6, seed=3)
    tables = crm.tables
    times = {name: _canonical_times(name, frame) for name, frame in tables.frames().items()}
    return dataclasses.replace(crm, tables=dataclasses.replace(tables, **times))


@pytest.fixture(scope="module")
def engines(crm_us: SimulatedCRM) -> tuple[DealWinDataModule, DealWinDataModule]:
    pandas_built = DealWinDataModule(lambda: crm_us, **GRID)
    duckdb_built = DealWinDataModule(lambda: crm_us, **GRID, snapshot_engine="duckdb")
    pandas_built.setup()
    duckdb_built.setup()
    return pandas_built, duckdb_built


def _all_rows(dataset) -> dict[str, torch.Tensor]:
    return dataset[list(range(len(dataset)))]


def test_duckdb_frames_tensors_spec_and_scoring_rows_equal_pandas(engines):
    a, b = engines
    assert a.sizes == b.sizes and a.sizes["train_rows"] > 100
    for split in SPLITS:
        # Same rows in the same order, same dtypes; floats equal to rounding (1e-15 days).
        pd.testing.assert_frame_equal(a.frames[split], b.frames[split], check_exact=False, rtol=1e-12, atol=1e-9)
        tensors_a, tensors_b = _all_rows(a._datasets[split]), _all_rows(b._datasets[split])
        assert tensors_a.keys() == tensors_b.keys()
        for key, value in tensors_a.items():
            assert value.dtype == tensors_b[key].dtype, key
            assert torch.allclose(value.double(), tensors_b[key].double(), rtol=0, atol=1e-6), key
    assert isinstance(b._datasets["train"], MemmapBatchDataset)
    assert a.spec.vocabularies == b.spec.vocabularies
    assert a.spec.means.keys() == b.spec.means.keys()
    assert np.allclose(list(a.spec.means.values()), list(b.spec.means.values()), rtol=1e-12)
    assert np.allclose(list(a.spec.stds.values()), list(b.spec.stds.values()), rtol=1e-12)
    pd.testing.assert_frame_equal(a.scoring_rows, b.scoring_rows, check_exact=False, rtol=1e-12, atol=1e-9)
    assert b.leakage_audit["violations"] == 0
    assert set(b.engine_seconds) == {"load", "snapshot_build", "read"}


def test_parity_fails_when_the_duckdb_rows_come_in_another_order(crm_us, engines, monkeypatch):
    """The parity test can fail: ranking deals by id instead of their first stage change (the pandas order)
    keeps every value but reorders the rows, which changes the shuffled batches and the content hash."""

    def by_id(db, name="first_seen"):
        db.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT opportunity_id::VARCHAR AS opportunity_id, "
            "dense_rank() OVER (ORDER BY opportunity_id::VARCHAR) AS first_seen FROM stage_history"
        )
        return name

    monkeypatch.setattr(snapshots_duckdb, "create_first_seen", by_id)
    broken = DealWinDataModule(lambda: crm_us, **GRID, snapshot_engine="duckdb")
    broken.setup()
    a, _ = engines
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(a.frames["train"], broken.frames["train"], check_exact=False, rtol=1e-12)


def test_memmap_dataset_returns_the_in_memory_batches(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"cat": rng.integers(0, 5, (50, 3)), "num": rng.normal(size=(50, 4)).astype(np.float32)}
    mapped = MemmapBatchDataset(write_arrays(arrays, tmp_path / "t"))
    in_memory = BatchDictDataset(arrays)
    rows = [7, 3, 49, 0, 3]
    for key in arrays:
        assert torch.equal(mapped[rows][key], in_memory[rows][key])
    assert len(mapped) == 50 and not list((tmp_path / "t").glob("*.partial"))
    with pytest.raises(ValueError, match="same number of rows"):
        write_arrays({"a": np.zeros(3), "b": np.zeros(4)}, tmp_path / "bad")


def test_engine_is_chosen_by_config_and_refuses_what_it_does_not_build(compose_train, tmp_path):
    cfg = compose_train(tmp_path, "data.snapshot_engine=duckdb")
    assert instantiate(cfg.data).snapshot_engine == "duckdb"
    assert instantiate(compose_train(tmp_path).data).snapshot_engine == "pandas"  # default unchanged
    with pytest.raises(ValueError, match=r"data\.snapshot_engine must be one of"):
        TabularSnapshotDataModule(lambda: None, snapshot_engine="spark_maybe")
    lead = TabularSnapshotDataModule(lambda: None, builder=LeadConversionBuilder(), snapshot_engine="duckdb")
    with pytest.raises(SnapshotEngineError, match="deal_win only, not lead_conversion"):
        lead.setup()


def test_a_pandas_trained_model_warm_starts_on_duckdb_built_data(published, compose_train, tmp_path):
    """Warm start reads the same features and vocabularies from either engine: train() with init_from on the
    DuckDB-built frame of the session's CRM runs, records its parent and the engine's timings."""
    version, _ = published
    models_dir = tmp_path / "models"
    shutil.copytree(version.path.parent.parent, models_dir)
    child = train(
        compose_train(
            tmp_path / "warm",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "data.snapshot_engine=duckdb",
            f"paths.models_dir={models_dir}",
            f"init_from=deal_win@{version.version}",
        )
    )
    assert child["parent"]["version"] == version.version
    assert child["metrics"]["model"]["auc"] > 0.6
    assert Path(child["run_dir"], "open_deals.parquet").is_file()
