"""DataLoaders over whole-batch datasets, on one process or sharded across DDP processes.

Our datasets index a whole batch at once (a list of rows -> a dict of tensors), which is several times
faster than per-row collation, so the loader's sampler yields lists of row numbers. Lightning cannot
inject its DistributedSampler into that arrangement (`use_distributed_sampler: false` in
configs/trainer/ddp.yaml), so under DDP each process shards the rows itself here.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler


class EpochBatchSampler(BatchSampler):
    """A BatchSampler that passes Lightning's `set_epoch` on to its row sampler, so a DistributedSampler
    draws a new shuffle each epoch (identically on every process)."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def batch_loader(dataset: Dataset, batch_size: int, shuffle: bool, trainer: Any = None, seed: int = 0) -> DataLoader:
    """Batches of row lists; with a multi-process trainer, this process's disjoint share of the rows.

    DistributedSampler pads the last share with a few repeated rows so every process runs the same number of
    steps (DDP needs that); evaluation metrics are synchronised across processes by torchmetrics.

    A shuffled (training) epoch whose last batch would hold a single row drops that row: batch-normalising
    backbones (ResNet) cannot train on one row, and one row of an epoch changes nothing else."""
    world_size = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
    if world_size > 1:
        rows = DistributedSampler(
            dataset, num_replicas=world_size, rank=int(trainer.global_rank), shuffle=shuffle, seed=seed
        )
    else:
        rows = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    drop_last = shuffle and len(rows) % batch_size == 1
    return DataLoader(dataset, sampler=EpochBatchSampler(rows, batch_size, drop_last=drop_last), batch_size=None)


class SplitBatchDataModule(pl.LightningDataModule):
    """A datamodule whose `setup` fills `_datasets[split]` with whole-batch datasets for train/val/test and
    sets `batch_size`; the loaders follow (DDP-aware), so each datamodule writes only how it builds data."""

    _datasets: dict[str, Dataset]
    batch_size: int

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return batch_loader(self._datasets[split], self.batch_size, shuffle, self.trainer)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
