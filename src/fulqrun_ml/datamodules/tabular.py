"""Tabular CRM tasks as one LightningDataModule: source -> snapshots -> features -> audit -> time split -> tensors.

The task-specific parts (which rows, which label, which features, which baselines) come from a builder
(`datamodules/task_builders.py`); everything else is done here, identically for deal win, close timing, lead
conversion and account churn/expansion. Everything a run needs to be explained later is kept on the
module: the fitted FeatureSpec (and target scaling for regression), the raw frames of every split (with
baseline columns and, on simulated data, the oracle), the rows serving would score today, the leakage-audit
summary and a content hash of the snapshot set.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.data.snapshots import WEIGHT_COLUMN, snapshot_dates, time_split
from fulqrun_ml.data.validation import check_contract
from fulqrun_ml.datamodules.built_frame import ORACLE_COLUMN, BuiltFrame, SnapshotEngineError
from fulqrun_ml.datamodules.eval_sample import stratified_sample
from fulqrun_ml.datamodules.loaders import SplitBatchDataModule
from fulqrun_ml.datamodules.memmap import memmap_datasets
from fulqrun_ml.datamodules.task_builders import DealWinBuilder, SnapshotTaskBuilder, TargetKind
from fulqrun_ml.features.audit import audit_point_in_time
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.recompute_audit import recompute_audit
from fulqrun_ml.features.spec import FeatureSpec, FittedFeatureSpec
from fulqrun_ml.features.target import TargetScaling

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
SNAPSHOT_ENGINES = ("pandas", "duckdb")


class BatchDictDataset(Dataset):
    """Indexed by a list of row numbers, returns a whole batch dict at once (no per-row collation)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
        self.length = len(next(iter(self.tensors.values())))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(rows)
        return {k: v[index] for k, v in self.tensors.items()}


def dataset_hash(frame: pd.DataFrame) -> str:
    """Content hash of a snapshot set, recorded in lineage so a model can be traced to its data."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()[:16]


class TabularDataModuleBase(SplitBatchDataModule):
    """What train() and export read from any tabular datamodule, and the tensors/loaders they share.

    Subclasses fill `frames` (raw rows per split, `label` in the task's units), `spec`, `target_kind`,
    `target_scaling` (regression), `baseline_columns`, `scoring_rows`, `data_hash` and `sizes` in `setup`,
    then call `_build_datasets`."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.frames: dict[str, pd.DataFrame] = {}
        self.spec: FittedFeatureSpec | None = None
        self.target_kind: TargetKind = "binary"
        self.target_scaling: TargetScaling | None = None
        self.baseline_columns: dict[str, str] = {}
        self.scoring_rows: pd.DataFrame | None = None
        self.scoring_file: str | None = None
        self.data_hash: str | None = None
        self.sizes: dict[str, int] = {}
        self.leakage_audit: dict[str, int] = {}
        self.classes: tuple[str, ...] | None = None  # multiclass: the label index -> class name
        self._datasets: dict[str, BatchDictDataset] = {}

    def target(self, split: str) -> np.ndarray:
        """The training target of a split: 0/1 labels, or the scaled regression label."""
        labels = self.frames[split]["label"].to_numpy(dtype=np.float64)
        if self.target_kind == "multiclass":  # class indices into `classes`, for cross-entropy
            return labels.astype(np.int64)
        if self.target_kind == "regression":
            return self.target_scaling.encode(labels)
        return labels.astype(np.float32)

    def _build_datasets(self) -> None:
        for split in SPLITS:
            arrays = self.spec.encode(self.frames[split])
            arrays["target"] = self.target(split)
            self._datasets[split] = BatchDictDataset(arrays)


class TabularSnapshotDataModule(TabularDataModuleBase):
    """Point-in-time snapshots of one CRM task (chosen by `builder`), split by time with an embargo."""

    def __init__(
        self,
        source: Callable[[], SimulatedCRM | CRMTables],
        builder: SnapshotTaskBuilder | None = None,
        snapshot_every_days: int = 14,
        warmup_days: int = 60,
        horizon_days: int = 180,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 256,
        snapshot_engine: str = "pandas",
        snapshot_cache_dir: str | None = None,
        eval_sample_rows: int | None = None,
    ) -> None:
        super().__init__(batch_size)
        if snapshot_engine not in SNAPSHOT_ENGINES:
            raise ValueError(f"data.snapshot_engine must be one of {SNAPSHOT_ENGINES}, got {snapshot_engine!r}")
        # pandas: the definitions, on tables in memory; duckdb: the same rows from the CRM's Parquet files
        # (datamodules/duckdb_frame.py), for CRMs too large for pandas.
        if snapshot_cache_dir is not None and snapshot_engine != "duckdb":
            raise ValueError("data.snapshot_cache_dir caches the duckdb engine's rows: set data.snapshot_engine=duckdb")
        self.snapshot_engine = snapshot_engine
        # duckdb: reuse the rows of a previous build (datamodules/duckdb_snapshot_cache.py); build only new dates.
        self.snapshot_cache_dir = snapshot_cache_dir
        # Evaluate on at most this many val / test rows (datamodules/eval_sample.py); the record says so.
        self.eval_sample_rows = eval_sample_rows
        self.eval_samples: dict[str, dict] = {}
        self.eval_unsampled: dict[str, pd.DataFrame] = {}
        self.engine_seconds: dict[str, float] = {}  # the engine's CRM load / snapshot build (/ read) seconds
        self.source = source
        self.builder = builder if builder is not None else DealWinBuilder()
        self.snapshot_every_days = snapshot_every_days
        self.warmup_days = warmup_days
        self.horizon_days = horizon_days
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.feature_spec: FeatureSpec = self.builder.feature_spec
        self.target_kind = self.builder.kind
        self.classes = getattr(self.builder, "classes", None)
        self.scoring_file = self.builder.scoring_file

    @property
    def open_deals(self) -> pd.DataFrame | None:
        """Deal win's name for the rows serving would score today (kept for existing callers)."""
        return self.scoring_rows

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        builder = self.builder
        if self.snapshot_engine == "duckdb":  # the same frame, built by DuckDB from the CRM's Parquet files
            if type(self) not in (TabularSnapshotDataModule, DealWinDataModule):
                raise SnapshotEngineError(
                    f"data.snapshot_engine=duckdb: {type(self).__name__} is not supported (only the plain deal-win "
                    "datamodule); use data.snapshot_engine=pandas"
                )
            from fulqrun_ml.datamodules.duckdb_frame import build_with_duckdb

            built = build_with_duckdb(self)
        else:
            built = self._build_with_pandas()
        frame, dates = built.frame, built.dates
        self.leakage_audit = built.leakage_audit
        split = time_split(dates, self.val_fraction, self.test_fraction)
        frame["split"] = split.assign(frame).to_numpy()
        self.data_hash = dataset_hash(frame.drop(columns=[c for c in frame if c.startswith(ORACLE_COLUMN)]))
        # After the hash: weights are derived from the rows, not data (calibration fits with them).
        frame[WEIGHT_COLUMN] = split.censoring_weights(frame, frame["split"])
        for column, values in built.groups.items():  # fairness groups, not features
            frame[column] = values
        frames = {s: frame[frame["split"] == s].reset_index(drop=True) for s in SPLITS}
        self.frames = builder.fit_baselines(frames)
        if self.eval_sample_rows is not None:
            for name in ("val", "test"):
                self.eval_unsampled[name] = self.frames[name]  # kept for an untimed check of the sample (benchmark)
                self.frames[name], record = stratified_sample(self.frames[name], self.eval_sample_rows, 0)
                self.eval_samples.update({name: record} if record else {})
        self.baseline_columns = dict(builder.baselines())
        if ORACLE_COLUMN in frame:
            self.baseline_columns["oracle"] = ORACLE_COLUMN
        elif f"{ORACLE_COLUMN}__{(self.classes or ('',))[0]}" in frame:  # multiclass: a column prefix
            self.baseline_columns["oracle"] = f"{ORACLE_COLUMN}__"
        self.spec = self.feature_spec.fit(self.frames["train"])
        if self.target_kind == "regression":
            self.target_scaling = TargetScaling.fit(self.frames["train"]["label"], builder.target_log1p)

        self.scoring_rows = built.scoring_rows
        self.sizes = {
            **built.counts,
            "snapshots": len(frame),
            "embargoed": int((frame["split"] == "embargoed").sum()),
            f"{builder.scoring_file.removesuffix('.parquet')}_now": len(self.scoring_rows),
            **{f"{s}_rows": len(self.frames[s]) for s in SPLITS},
            **{f"{s}_rows_sampled_from": r["of_rows"] for s, r in self.eval_samples.items()},
        }
        log.info("%s dataset: %s", builder.name, self.sizes)
        if built.tensor_dir is not None:
            self._datasets = memmap_datasets(self, built.tensor_dir)
        else:
            self._build_datasets()

    def _build_with_pandas(self) -> BuiltFrame:
        """The definitions: snapshots and features from the CRM tables in memory (`builder`)."""
        builder = self.builder
        start = time.perf_counter()
        loaded = self.source()
        tables = loaded.tables if isinstance(loaded, SimulatedCRM) else loaded
        check_contract(tables)
        loaded_at = time.perf_counter()

        dates = snapshot_dates(tables, self.snapshot_every_days, self.warmup_days, self.horizon_days)
        snapshots = builder.snapshots(tables, dates, self.horizon_days)
        if snapshots.empty:
            raise ValueError(f"{builder.name}: no snapshots on {len(dates)} as_of dates; is the data too short?")
        if builder.embargo_by_horizon:
            snapshots = snapshots.assign(label_time=snapshots["as_of"] + pd.Timedelta(days=self.horizon_days))
        keys = [builder.entity, "as_of"]
        features, source_times = builder.features(tables, snapshots, with_sources=True)
        leakage_audit = audit_point_in_time(source_times, self.feature_spec.names)
        # The check that does not trust the builders: a small sample recomputed from the CRM cut at as_of.
        recomputed = recompute_audit(tables, features, builder.features, builder.entity, self.feature_spec.names)
        leakage_audit.update(recomputed.summary())
        frame = snapshots.merge(features, on=keys)
        oracle = builder.oracle(loaded, frame, self.horizon_days) if isinstance(loaded, SimulatedCRM) else None
        if oracle is not None and np.ndim(oracle) == 2:  # multiclass: one truth column per class
            frame = frame.assign(**{f"{ORACLE_COLUMN}__{c}": oracle[:, k] for k, c in enumerate(self.classes)})
        elif oracle is not None:
            frame[ORACLE_COLUMN] = oracle
        groups, scoring_rows = builder.group_columns(tables, frame), builder.scoring_rows(tables, self.horizon_days)
        self.engine_seconds = {
            "load": round(loaded_at - start, 3),
            "snapshot_build": round(time.perf_counter() - loaded_at, 3),
        }
        return BuiltFrame(
            frame=frame,
            dates=dates,
            leakage_audit=leakage_audit,
            groups=groups,
            scoring_rows=scoring_rows,
            counts={
                "opportunities": len(tables.opportunities),
                "activities": len(tables.activities),
                "stage_changes": len(tables.stage_history),
            },
        )


class DealWinDataModule(TabularSnapshotDataModule):
    """The deal-win datamodule by its original name and signature (existing configs, tests and scripts)."""

    def __init__(
        self,
        source: Callable[[], SimulatedCRM | CRMTables],
        snapshot_every_days: int = 14,
        warmup_days: int = 60,
        horizon_days: int = 180,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 256,
        feature_spec: FeatureSpec = DEAL_WIN_FEATURES,
        builder: SnapshotTaskBuilder | None = None,
        snapshot_engine: str = "pandas",
        snapshot_cache_dir: str | None = None,
        eval_sample_rows: int | None = None,
    ) -> None:
        super().__init__(
            source,
            builder if builder is not None else DealWinBuilder(feature_spec),
            snapshot_every_days,
            warmup_days,
            horizon_days,
            val_fraction,
            test_fraction,
            batch_size,
            snapshot_engine,
            snapshot_cache_dir,
            eval_sample_rows,
        )
