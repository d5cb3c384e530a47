"""The deal-win dataset as a LightningDataModule: source -> snapshots -> features -> time split -> tensors.

Everything a run needs to be explained later is kept on the module: the fitted FeatureSpec, the raw
frames of every split (with the rep's probability and, for simulated data, the oracle), the deals open
at extraction time (what serving would score today) and a content hash of the snapshot set.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from fulqrun_ml.data.contract import CRMTables, check_contract
from fulqrun_ml.data.simulator import SimulatedCRM, oracle_win_probability
from fulqrun_ml.data.snapshots import deal_win_snapshots, open_deals_as_of, snapshot_dates, time_split
from fulqrun_ml.features.audit import audit_point_in_time
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.features.spec import FeatureSpec, FittedFeatureSpec

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


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


class DealWinDataModule(pl.LightningDataModule):
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
    ) -> None:
        super().__init__()
        self.source = source
        self.snapshot_every_days = snapshot_every_days
        self.warmup_days = warmup_days
        self.horizon_days = horizon_days
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batch_size = batch_size
        self.feature_spec = feature_spec
        self.frames: dict[str, pd.DataFrame] = {}
        self.spec: FittedFeatureSpec | None = None
        self.open_deals: pd.DataFrame | None = None
        self.data_hash: str | None = None
        self.sizes: dict[str, int] = {}
        self.leakage_audit: dict[str, int] = {}
        self._datasets: dict[str, BatchDictDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        loaded = self.source()
        tables = loaded.tables if isinstance(loaded, SimulatedCRM) else loaded
        latent = loaded.latent if isinstance(loaded, SimulatedCRM) else None
        check_contract(tables)

        dates = snapshot_dates(tables, self.snapshot_every_days, self.warmup_days, self.horizon_days)
        snapshots = deal_win_snapshots(tables, dates, self.horizon_days)
        features, source_times = compute_deal_features(tables, snapshots, with_sources=True)
        self.leakage_audit = audit_point_in_time(source_times, self.feature_spec.names)
        frame = snapshots.merge(features, on=["opportunity_id", "as_of"])
        if latent is not None:
            frame["oracle_probability"] = _oracle(latent, frame)
        frame["split"] = time_split(dates, self.val_fraction, self.test_fraction).assign(frame).to_numpy()
        self.data_hash = dataset_hash(frame.drop(columns=["oracle_probability"], errors="ignore"))
        self.frames = {s: frame[frame["split"] == s].reset_index(drop=True) for s in SPLITS}
        self.spec = self.feature_spec.fit(self.frames["train"])

        now = open_deals_as_of(tables, tables.extracted_at)
        self.open_deals = now.merge(compute_deal_features(tables, now), on=["opportunity_id", "as_of"])
        self.sizes = {
            "opportunities": len(tables.opportunities),
            "activities": len(tables.activities),
            "stage_changes": len(tables.stage_history),
            "snapshots": len(frame),
            "embargoed": int((frame["split"] == "embargoed").sum()),
            "open_deals_now": len(self.open_deals),
            **{f"{s}_rows": len(self.frames[s]) for s in SPLITS},
        }
        log.info("deal-win dataset: %s", self.sizes)
        for split in SPLITS:
            arrays = self.spec.encode(self.frames[split])
            arrays["target"] = self.frames[split]["label"].to_numpy(dtype=np.float32)
            self._datasets[split] = BatchDictDataset(arrays)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self._datasets[split]
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        return DataLoader(dataset, sampler=BatchSampler(sampler, self.batch_size, drop_last=False), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _oracle(latent: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    truth = latent.set_index("opportunity_id")["true_win_probability"].reindex(frame["opportunity_id"])
    return oracle_win_probability(truth.to_numpy(), frame["stage_index"].to_numpy())
