"""Revenue forecasting data as a LightningDataModule: CRM source -> `revenue_series` -> panel -> windows.

`level` (organization | region | rep, or a list of them) and `freq` (W | M) pick the series. Several levels
train one global model on all their series together (windows are scale-free, so they can share weights);
conformal offsets and backtest metrics are still computed per level. (Measured on the simulator: joint
training lets the many rep windows dominate and costs the organization level accuracy, so the defaults
and the leaderboard train one level at a time.) lookback, horizon and the lengths of the validation,
calibration and test periods (in periods of `freq`) fix the time cut-offs (see windows.split_origins).
The module keeps the panel, the window arrays of every split and a content hash of the series, which
lineage records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.data.task_snapshots import revenue_series
from fulqrun_ml.data.validation import check_contract
from fulqrun_ml.datamodules.loaders import SplitBatchDataModule
from fulqrun_ml.datamodules.tabular import BatchDictDataset, dataset_hash
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.noise_floor import won_deal_values
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


class RevenueForecastDataModule(SplitBatchDataModule):
    def __init__(
        self,
        source: Callable[[], SimulatedCRM | CRMTables],
        level: str | Sequence[str] = ("organization", "region", "rep"),
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
        levels = [level] if isinstance(level, str) else list(level)
        bad = [lv for lv in levels if lv not in LEVELS]
        if bad or not levels:
            raise FulqrunMLError(f"field 'level': {bad or levels!r} must be one or more of {LEVELS}")
        if freq not in FREQS:
            raise FulqrunMLError(f"field 'freq': {freq!r} is not one of {FREQS}")
        self.source = source
        self.levels, self.freq = levels, freq
        self.lookback, self.horizon, self.season = lookback, horizon, season
        self.warmup_periods = warmup_periods
        self.val_periods, self.calibration_periods, self.test_periods = val_periods, calibration_periods, test_periods
        self.batch_size = batch_size
        self.panel: SeriesPanel | None = None
        self.series_level: np.ndarray = np.array([], dtype=object)  # level of each panel row
        self.deal_values: np.ndarray = np.array([])  # won-deal values, for the WAPE noise floor
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
        self.deal_values = won_deal_values(tables)
        series = pd.concat(
            [
                revenue_series(tables, freq=self.freq, by=lv).assign(
                    group=lambda f, lv=lv: lv + ":" + f["group"].astype(str)
                )
                for lv in self.levels
            ],
            ignore_index=True,
        )
        self.data_hash = dataset_hash(series[["group", "period_start", "revenue"]])
        self.panel = panel_from_series(series, self.warmup_periods)
        self.series_level = np.array([g.split(":", 1)[0] for g in self.panel.groups], dtype=object)
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
            **{f"{lv}_series": int((self.series_level == lv).sum()) for lv in self.levels},
            "periods": self.panel.n_periods,
            **{f"{s}_windows": len(self.windows[s]["target"]) for s in SPLITS},
            **{f"{s}_origins": len(self.origins[s]) for s in SPLITS},
        }
        log.info("revenue forecast dataset (%s, %s): %s", self.levels, self.freq, self.sizes)
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
