"""Any event table + label table as one LightningDataModule: `data=events`.

Reads and validates both files (`data/event_table.py`), cuts every label's history at its as_of
(`event_features.cut_histories`, audited), splits, fits the event encoder on the training histories only and the
aggregates' FeatureSpec on the training rows only, and hands every batch the aggregates (`continuous`,
`categorical`), the sequence fields and the target.

Split (`split`): `entity` (seeded: an entity's rows all land in one split), `time` (the earliest as_of dates
train, the latest test; train and validation rows whose as_of lies within `embargo_days` of the first test
as_of are dropped, so a label that looks `embargo_days` ahead cannot see the period the model is scored on), or
`auto`: by
time when the labels have 3+ distinct as_of values, else by entity.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from fulqrun_ml.data.event_table import (
    EventTableError,
    check_label_histories,
    load_events,
    load_labels,
)
from fulqrun_ml.datamodules.tabular import SPLITS, BatchDictDataset, TabularDataModuleBase, dataset_hash
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.sequence.datamodule import LengthBucketBatchSampler
from fulqrun_ml.sequence.event_features import (
    DAY_NS,
    PADDING_AGE,
    EventEncoder,
    EventIndex,
    Histories,
    audit_cut,
    cut_histories,
    ns_since_epoch,
)

log = logging.getLogger(__name__)


class TrimmedBatchDataset(BatchDictDataset):
    """Whole batches whose sequence fields drop the leading columns that are padding in every row: exact, since
    the encoder masks padding and counts positions from the newest event; a batch of short histories then
    costs its own length instead of max_len (attention is quadratic in it)."""

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        batch = super().__getitem__(rows)
        age = batch["age_days"]
        used = int((age != PADDING_AGE).sum(dim=1).max().clamp(min=1))
        if used < age.shape[1]:
            batch = {
                k: v[:, -used:] if v.ndim == 2 and v.shape[1] == age.shape[1] and k in self.sequence_keys else v
                for k, v in batch.items()
            }
        return batch

    @property
    def sequence_keys(self) -> set[str]:
        return {k for k, v in self.tensors.items() if v.ndim == 2 and k not in ("continuous", "categorical")}


def _subset(h: Histories, mask: np.ndarray) -> Histories:
    return Histories(h.start[mask], h.end[mask], h.as_of_ns[mask])


class EventTableDataModule(TabularDataModuleBase):
    def __init__(
        self,
        events_path: str,
        labels_path: str,
        entity_col: str,
        time_col: str,
        target: str,
        as_of_col: str,
        split: str = "auto",
        embargo_days: float = 0.0,
        seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 256,
        max_len: int = 64,
        windows: tuple[int, ...] | list[int] = (7, 30, 90),
        sort_events: bool = False,
        allow_duplicate_times: bool = False,
        max_categories: int = 50,
        task_name: str = "events",
    ) -> None:
        super().__init__(batch_size)
        if task_name != "events":
            raise EventTableError(f"data=events trains under task=events, not task={task_name}: add task=events")
        if split not in ("auto", "entity", "time"):
            raise EventTableError(f"data.split must be auto, entity or time, got {split!r}")
        self.events_path, self.labels_path = Path(str(events_path)), Path(str(labels_path))
        self.entity_col, self.time_col, self.target_col, self.as_of_col = entity_col, time_col, target, as_of_col
        self.split, self.embargo_days, self.seed = split, float(embargo_days), seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.max_len, self.windows = int(max_len), tuple(int(w) for w in windows)
        self.sort_events, self.allow_duplicate_times = sort_events, allow_duplicate_times
        self.max_categories = max_categories
        self.encoder: EventEncoder | None = None
        self.sequences: dict[str, dict[str, np.ndarray]] = {}
        self.column_types: dict[str, object] | None = None
        self.split_used: str | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        events = load_events(
            self.events_path,
            self.entity_col,
            self.time_col,
            self.sort_events,
            self.allow_duplicate_times,
            self.max_categories,
        )
        labels = load_labels(self.labels_path, self.entity_col, self.as_of_col, self.target_col)
        check_label_histories(events, labels, self.labels_path.name, self.as_of_col)
        # How the files were read, for column_types.json: what `predict --events` reads the same way.
        self.column_types = {
            **events.columns.to_dict(),
            "entity_col": self.entity_col,
            "time_col": self.time_col,
            "as_of_col": self.as_of_col,
            "target": self.target_col,
            "classes": list(labels.classes),
            "sort_events": self.sort_events,
            "allow_duplicate_times": self.allow_duplicate_times,
        }
        log.info("event columns: %s", self.column_types)
        rows = labels.labels
        split = self._split(rows)
        keep = split != "embargoed"
        rows, split = rows[keep].reset_index(drop=True), split[keep]
        index = EventIndex(events.events)
        histories = cut_histories(index, rows["entity"].to_numpy(), rows["as_of"])
        self.leakage_audit = {"event_histories": audit_cut(index, histories)}
        train = _subset(histories, split == "train")
        self.encoder = EventEncoder.fit(events.events, events.columns, train, self.windows, self.max_len)
        aggregates, sequences = self.encoder.transform(events.events, index, histories)
        frame = pd.concat([rows[["entity", "as_of"]], aggregates, rows[["label"]]], axis=1)
        frame["split"] = split
        self.frames = {s: frame[split == s].reset_index(drop=True) for s in SPLITS}
        self.sequences = {s: {k: v[split == s] for k, v in sequences.items()} for s in SPLITS}
        self.target_kind = labels.kind
        self.spec = self.encoder.feature_spec().fit(self.frames["train"])
        if self.target_kind == "regression":
            self.target_scaling = TargetScaling.fit(self.frames["train"]["label"], log1p=False, name=labels.target)
        content = f"{self.events_path.name}:{self.labels_path.name}:{dataset_hash(frame.drop(columns=['split']))}"
        self.data_hash = hashlib.sha256(content.encode()).hexdigest()[:16]
        lengths = histories.end - histories.start
        self.sizes = {
            "events": len(events.events),
            "entities": int(events.events.iloc[:, 0].nunique()),
            "labels": len(labels.labels),
            "embargoed": int((~keep).sum()),
            "train_mean_events": round(float(lengths[split == "train"].mean()), 2),
            "train_truncated_rows": int((lengths[split == "train"] > self.max_len).sum()),
            **{f"{s}_rows": len(self.frames[s]) for s in SPLITS},
        }
        log.info(
            "event table %s (%s split): %s target, %s", self.events_path.name, self.split_used, labels.kind, self.sizes
        )
        for s in SPLITS:
            arrays = {**self.spec.encode(self.frames[s]), **self.sequences[s], "target": self.target(s)}
            self._datasets[s] = TrimmedBatchDataset(arrays)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Batches of similar history lengths (the deal-win sequence sampler), so trimming padding pays off."""
        lengths = (self.sequences[split]["age_days"] != PADDING_AGE).sum(axis=1)
        trainer = self.trainer
        world_size = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
        rank = int(trainer.global_rank) if world_size > 1 else 0
        sampler = LengthBucketBatchSampler(lengths, self.batch_size, shuffle, world_size=world_size, rank=rank)
        return DataLoader(self._datasets[split], sampler=sampler, batch_size=None)

    def _split(self, rows: pd.DataFrame) -> np.ndarray:
        n_dates = rows["as_of"].nunique()
        how = self.split if self.split != "auto" else ("time" if n_dates >= 3 else "entity")
        self.split_used = how
        split = self._time_split(rows) if how == "time" else self._entity_split(rows)
        for s in SPLITS:
            if not (split == s).any():
                raise EventTableError(
                    f"{self.labels_path.name}: the {how} split leaves no {s} rows ({len(rows)} labels, "
                    f"{n_dates} as_of values); add labels or change data.val_fraction / data.test_fraction"
                )
        return split

    def _entity_split(self, rows: pd.DataFrame) -> np.ndarray:
        entities = np.array(sorted(rows["entity"].unique()))
        order = np.random.default_rng(self.seed).permutation(len(entities))
        n_test = max(1, round(len(entities) * self.test_fraction))
        n_val = max(1, round(len(entities) * self.val_fraction))
        assign = np.full(len(entities), "train", dtype=object)
        assign[order[:n_test]] = "test"
        assign[order[n_test : n_test + n_val]] = "val"
        return pd.Series(assign, index=entities).reindex(rows["entity"]).to_numpy()

    def _time_split(self, rows: pd.DataFrame) -> np.ndarray:
        """The latest dates (about test_fraction of rows) test; rows within the embargo before them dropped; of the
        rest, the latest dates (about val_fraction of all rows) validate and the earlier ones train."""
        as_of = ns_since_epoch(rows["as_of"])
        test_from = _date_at(as_of, 1 - self.test_fraction)
        split = np.full(len(as_of), "embargoed", dtype=object)
        split[as_of >= test_from] = "test"
        rest = as_of + int(self.embargo_days * DAY_NS) <= test_from
        if rest.sum() >= 2:
            val_from = _date_at(as_of[rest], 1 - self.val_fraction / max(1 - self.test_fraction, 1e-9))
            split[rest] = np.where(as_of[rest] >= val_from, "val", "train")
        return split


def _date_at(as_of: np.ndarray, fraction: float) -> int:
    """The first date on or after which about (1 - fraction) of the rows lie, never the first date (something
    must remain before it)."""
    dates = np.unique(as_of)
    if len(dates) < 2:
        return int(dates[-1]) + 1
    before = np.searchsorted(np.sort(as_of), dates, side="left") / len(as_of)
    at = min(max(int(np.searchsorted(before, fraction)), 1), len(dates) - 1)
    return int(dates[at])
