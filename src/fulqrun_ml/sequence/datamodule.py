"""The deal-win dataset plus each snapshot's activity sequence, as one LightningDataModule.

`DealWinSequenceDataModule` *is* a `DealWinDataModule` (same source, snapshots, features, leakage audit,
time split with embargo, FeatureSpec fitted on train, rep and oracle columns), so the fused model and the
tabular-only models train and are scored on identical rows. On top it aligns, per (opportunity_id, as_of)
row, the last `max_len` touches at or before as_of, fits the token vocabularies on the training split only,
and adds the sequence tensors to every batch dict. With another snapshot builder (`builder=LeadConversionBuilder`)
the rows are that task's and the sequences follow its entity (a lead's touches and own events).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.datamodules.tabular import SPLITS, DealWinDataModule
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.sequence.events import SequenceVocabulary, build_sequences, real_events


class _KeepLoaded:
    """Calls the configured source once and keeps what it returned: the parent's setup loads the tables
    without keeping them, and the sequences must come from exactly the same tables."""

    def __init__(self, source: Callable[[], SimulatedCRM | CRMTables]) -> None:
        self.source = source
        self.loaded: SimulatedCRM | CRMTables | None = None

    def __call__(self) -> SimulatedCRM | CRMTables:
        if self.loaded is None:
            self.loaded = self.source()
        return self.loaded

    @property
    def tables(self) -> CRMTables:
        loaded = self()
        return loaded.tables if isinstance(loaded, SimulatedCRM) else loaded


def audit_sequences(raw: dict[str, dict[str, np.ndarray]]) -> dict[str, int]:
    """The leakage audit for sequences: every real event must be at or before its row's as_of (age >= 0)."""
    rows = 0
    for split, arrays in raw.items():
        real = real_events(arrays["length"], arrays["age_days"].shape[1])
        late = real & (arrays["age_days"] < 0)
        if late.any():
            raise LeakageError(
                f"point-in-time violation: 'activity_sequences' ({split}) has {int(late.sum())} events after as_of"
            )
        rows += len(arrays["length"])
    return {"rows_audited": rows, "violations": 0}


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of rows with similar history lengths, so trimming shared padding (task.sequence_tensors) works.

    Random batches almost always hold one long history, which makes every batch cost max_len; here rows are
    shuffled, cut into chunks of `bucket_batches` batches, each chunk sorted by length and split into batches,
    and the batches shuffled again (the usual bucket iterator). Randomness comes from torch's global generator,
    which Lightning seeds and the RNG checkpoint callback saves, so runs and resumes stay reproducible.

    Under DDP (`world_size` > 1) every process draws the same batch order (Lightning seeds all ranks alike) and
    keeps every world_size-th batch, the last few repeated so all processes run the same number of steps."""

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        bucket_batches: int = 50,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_batches = bucket_batches
        self.world_size, self.rank = world_size, rank

    def __len__(self) -> int:
        return -(-self._n_batches() // self.world_size)

    def _n_batches(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        order = torch.randperm(n).numpy() if self.shuffle else np.arange(n)
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, n, chunk):
            rows = order[start : start + chunk]
            rows = rows[np.argsort(self.lengths[rows], kind="stable")]
            batches += [rows[i : i + self.batch_size].tolist() for i in range(0, len(rows), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
        if self.world_size > 1:
            padded = batches + batches[: len(self) * self.world_size - len(batches)]
            batches = padded[self.rank :: self.world_size]
        yield from batches


class DealWinSequenceDataModule(DealWinDataModule):
    def __init__(self, source: Callable[[], SimulatedCRM | CRMTables], max_len: int = 64, **kwargs: Any) -> None:
        super().__init__(source=_KeepLoaded(source), **kwargs)
        self.max_len = max_len
        self.vocabulary: SequenceVocabulary | None = None
        self.sequences: dict[str, dict[str, np.ndarray]] = {}
        self.open_deal_sequences: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self._datasets and self.vocabulary is not None:
            return
        super().setup(stage)
        tables = self.source.tables
        raw = {
            split: build_sequences(tables, self.frames[split], self.max_len, self.builder.entity) for split in SPLITS
        }
        self.leakage_audit["activity_sequences"] = audit_sequences(raw)
        self.vocabulary = SequenceVocabulary.fit(raw["train"], self.max_len)
        for split in SPLITS:
            self.sequences[split] = self.vocabulary.transform(raw[split])
            dataset = self._datasets[split]
            for name, values in self.sequences[split].items():
                dataset.tensors[name] = torch.from_numpy(np.array(values, copy=True))
        self.open_deal_sequences = self.sequence_inputs(tables, self.open_deals)
        lengths = raw["train"]["length"]
        self.sizes["train_mean_events"] = round(float(lengths.mean()), 2) if len(lengths) else 0.0
        self.sizes["train_truncated_rows"] = int((lengths >= self.max_len).sum())

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        lengths = (self.sequences[split]["event_type"] != 0).sum(axis=1)
        trainer = self.trainer
        world_size = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
        rank = int(trainer.global_rank) if world_size > 1 else 0
        sampler = LengthBucketBatchSampler(lengths, self.batch_size, shuffle, world_size=world_size, rank=rank)
        return DataLoader(self._datasets[split], sampler=sampler, batch_size=None)

    def sequence_inputs(self, tables: CRMTables, index: pd.DataFrame) -> dict[str, np.ndarray]:
        """Model-ready sequence arrays for any (entity, as_of) rows, with the fitted vocabularies."""
        if self.vocabulary is None:
            raise RuntimeError("call setup() first: the vocabularies are fitted on the training split")
        return self.vocabulary.transform(build_sequences(tables, index, self.max_len, self.builder.entity))
