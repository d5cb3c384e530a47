"""Revenue forecasting data as a LightningDataModule: CRM source -> `revenue_series` -> panel -> windows.

`level` (organization | region | rep) and `freq` (W | M) pick the series; lookback, horizon and the
lengths of the validation, calibration and test periods (in periods of `freq`) fix the time cut-offs
(see windows.split_origins). The module keeps the panel, the window arrays of every split and a content
hash of the series, which lineage records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from fulqrun_ml.data.contract import CRMTables, check_contract
from fulqrun_ml.data.datamodule import BatchDictDataset, dataset_hash
from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.data.task_snapshots import revenue_series
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.windows import (
    CALENDAR_FEATURES,
    SeriesPanel,
    make_windows,
    panel_from_series,
    split_origins,
)

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "calibration", "test")
LEVELS = ("organization", "region", "rep")
FREQS = ("W", "M")
TENSOR_KEYS = ("history", "calendar", "series", "target")


class RevenueForecastDataModule(pl.LightningDataModule):
    def __init__(
        self,
        source: Callable[[], SimulatedCRM | CRMTables],
        level: Literal["organization", "region", "rep"] = "organization",
        freq: Literal["W", "M"] = "W",
        lookback: int = 26,
        horizon: int = 4,
        season: int = 13,
        warmup_periods: int = 8,
        val_periods: int = 13,
        calibration_periods: int = 13,
        test_periods: int = 26,
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        if level not in LEVELS:
            raise FulqrunMLError(f"field 'level': {level!r} is not one of {LEVELS}")
        if freq not in FREQS:
            raise FulqrunMLError(f"field 'freq': {freq!r} is not one of {FREQS}")
        self.source = source
        self.level, self.freq = level, freq
        self.lookback, self.horizon, self.season = lookback, horizon, season
        self.warmup_periods = warmup_periods
        self.val_periods, self.calibration_periods, self.test_periods = val_periods, calibration_periods, test_periods
        self.batch_size = batch_size
        self.panel: SeriesPanel | None = None
        self.origins: dict[str, np.ndarray] = {}
        self.windows: dict[str, dict[str, np.ndarray]] = {}
        self.data_hash: str | None = None
        self.sizes: dict[str, int] = {}
        self._datasets: dict[str, BatchDictDataset] = {}

    @property
    def n_calendar(self) -> int:
        return len(CALENDAR_FEATURES)

    @property
    def n_series(self) -> int:
        if self.panel is None:
            raise FulqrunMLError("call setup() before asking for n_series")
        return len(self.panel.groups)

    @property
    def test_start(self) -> int:
        """Index of the first test period in the panel: everything before it is 'in sample'."""
        assert self.panel is not None
        return self.panel.n_periods - self.test_periods

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        loaded = self.source()
        tables = loaded.tables if isinstance(loaded, SimulatedCRM) else loaded
        check_contract(tables)
        series = revenue_series(tables, freq=self.freq, by=self.level)
        self.data_hash = dataset_hash(series[["group", "period_start", "revenue"]])
        self.panel = panel_from_series(series, self.warmup_periods)
        self.origins = split_origins(
            self.panel.n_periods,
            self.lookback,
            self.horizon,
            self.val_periods,
            self.calibration_periods,
            self.test_periods,
        )
        self.windows = {s: make_windows(self.panel, self.origins[s], self.lookback, self.horizon) for s in SPLITS}
        self.sizes = {
            "series": len(self.panel.groups),
            "periods": self.panel.n_periods,
            **{f"{s}_windows": len(self.windows[s]["target"]) for s in SPLITS},
            **{f"{s}_origins": len(self.origins[s]) for s in SPLITS},
        }
        log.info("revenue forecast dataset (%s, %s): %s", self.level, self.freq, self.sizes)
        self._datasets = {s: BatchDictDataset({k: self.windows[s][k] for k in TENSOR_KEYS}) for s in SPLITS}

    def split_window(self, split: str) -> dict[str, str]:
        """First origin and first / last target period (their start dates) of a split, for lineage."""
        assert self.panel is not None
        origins = self.origins[split]
        last_target = min(int(origins[-1]) + self.horizon, self.panel.n_periods - 1)
        return {
            "first_origin": str(self.panel.period_start[origins[0]].date()),
            "first_target": str(self.panel.period_start[origins[0] + 1].date()),
            "last_target": str(self.panel.period_start[last_target].date()),
            "windows": str(len(self.windows[split]["target"])),
        }

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
