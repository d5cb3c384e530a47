"""Any user series table as forecast windows: the same panel / windows / splits as the CRM revenue forecaster.

`fulqrun-ml train task=forecast data=series data.path=X.csv data.id_cols=[store] data.time_col=week
data.target=sales`. The table is read and validated by `data.series_table` (frequency, gaps, lengths, short
series, hierarchy levels); this module turns it into a `SeriesPanel` whose per-series covariates are the
calendar features, the known-future columns and one-hot static categoricals, then cuts the same
train / val / calibration / test origins as `RevenueForecastDataModule`, so `ForecastPipeline` (and the
series subclass that adds the statistical anchors and reconciliation) trains, calibrates and backtests it
unchanged. Windows whose lookback reads a period the series was not observed in are dropped; targets in such
periods are NaN and ignored by the loss and the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from fulqrun_ml.data.series_table import (
    SeriesTable,
    SeriesTableError,
    SeriesTableSpec,
    build_series_table,
    read_series_table,
)
from fulqrun_ml.datamodules.loaders import SplitBatchDataModule
from fulqrun_ml.datamodules.tabular import BatchDictDataset, dataset_hash
from fulqrun_ml.forecasting.windows import (
    CALENDAR_FEATURES,
    SeriesPanel,
    calendar_features,
    make_windows,
    split_origins,
)

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "calibration", "test")
TENSOR_KEYS = ("history", "calendar", "series", "target")
# The dominant cycle per frequency family (pandas offset prefix): a year of weeks / months / quarters, a week of days.
SEASON_BY_FREQ = {"W": 52, "M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4, "D": 7, "B": 5, "h": 24, "H": 24}


def season_for(freq: str) -> int:
    """The default season of a pandas frequency string (e.g. 'W-MON' -> 52)."""
    base = freq.split("-")[0]
    if base not in SEASON_BY_FREQ:
        raise SeriesTableError(f"field 'season': no default season for frequency {freq!r}; set data.season")
    return SEASON_BY_FREQ[base]


def period_calendar(periods: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """[T, 4] CRM calendar features for periods labelled by their start (end = next start - 1 day)."""
    ends = periods + to_offset(freq) - pd.Timedelta(days=1)
    return calendar_features(periods.to_series(), ends.to_series())


def covariates(table: SeriesTable) -> np.ndarray:
    """[G, T_all, C]: calendar features, known-future columns, one-hot static categoricals (a parent whose
    children differ gets the extra 'mixed' slot)."""
    n_groups, n_periods = len(table.groups), len(table.periods)
    parts = [np.broadcast_to(period_calendar(table.periods, table.freq), (n_groups, n_periods, len(CALENDAR_FEATURES)))]
    parts.append(table.known)
    for j, col in enumerate(table.spec.static_cols):
        onehot = np.eye(len(table.static_vocab[col]) + 1)[table.static[:, j]]
        parts.append(np.broadcast_to(onehot[:, None, :], (n_groups, n_periods, onehot.shape[1])))
    return np.concatenate(parts, axis=2).astype(np.float32)


def covariate_names(table: SeriesTable) -> list[str]:
    names = list(CALENDAR_FEATURES) + list(table.spec.known_future_cols)
    for col in table.spec.static_cols:
        names += [f"{col}={v}" for v in table.static_vocab[col]] + [f"{col}=mixed"]
    return names


class SeriesForecastDataModule(SplitBatchDataModule):
    def __init__(
        self,
        path: str,
        id_cols: Sequence[str],
        time_col: str,
        target: str,
        known_future_cols: Sequence[str] = (),
        static_cols: Sequence[str] = (),
        hierarchy: Sequence[str] = (),
        gap_fill: str = "zero",
        short_series: str = "drop",
        min_length: int | None = None,
        lookback: int = 26,
        horizon: int = 4,
        season: int | None = None,
        val_periods: int = 13,
        calibration_periods: int = 13,
        test_periods: int = 26,
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        if gap_fill not in ("zero", "error"):
            raise SeriesTableError(f"field 'gap_fill': {gap_fill!r} is not 'zero' or 'error'")
        if short_series not in ("drop", "error"):
            raise SeriesTableError(f"field 'short_series': {short_series!r} is not 'drop' or 'error'")
        self.path = path
        self.spec = SeriesTableSpec(
            id_cols=tuple(id_cols),
            time_col=time_col,
            target=target,
            known_future_cols=tuple(known_future_cols or ()),
            static_cols=tuple(static_cols or ()),
            hierarchy=tuple(hierarchy or ()),
            gap_fill=gap_fill,  # type: ignore[arg-type]
            short_series=short_series,  # type: ignore[arg-type]
            # A series needs one whole window (lookback + horizon) to be trained or scored at all.
            min_length=lookback + horizon if min_length is None else int(min_length),
        )
        self.lookback, self.horizon, self._season = lookback, horizon, season
        self.val_periods, self.calibration_periods, self.test_periods = val_periods, calibration_periods, test_periods
        self.batch_size = batch_size
        self.table: SeriesTable | None = None
        self.panel: SeriesPanel | None = None
        self.covariates: np.ndarray = np.zeros((0, 0, 0), dtype=np.float32)  # [G, T_all, C], future periods too
        self.series_level: np.ndarray = np.array([], dtype=object)
        self.levels: list[str] = []
        self.freq = ""
        self.deal_values: np.ndarray = np.array([])  # no deals behind a user table: the WAPE floor is unknown
        self.origins: dict[str, np.ndarray] = {}
        self.windows: dict[str, dict[str, np.ndarray]] = {}
        self.data_hash: str | None = None
        self.sizes: dict[str, Any] = {}
        self._datasets: dict[str, BatchDictDataset] = {}

    @property
    def season(self) -> int:
        if self._season is not None:
            return int(self._season)
        if not self.freq:
            raise SeriesTableError("call setup() before asking for the season")
        return season_for(self.freq)

    @property
    def n_calendar(self) -> int:
        return int(self.covariates.shape[2])

    @property
    def n_series(self) -> int:
        if self.panel is None:
            raise SeriesTableError("call setup() before asking for n_series")
        return len(self.panel.groups)

    @property
    def test_start(self) -> int:
        assert self.panel is not None
        return self.panel.n_periods - self.test_periods

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        frame = read_series_table(self.path)
        table = build_series_table(frame, self.spec)
        self.table, self.freq = table, table.freq
        self.covariates = covariates(table)
        observed = table.periods[: table.n_observed]
        self.panel = SeriesPanel(
            groups=table.groups,
            period_start=observed,
            period_end=observed + to_offset(table.freq) - pd.Timedelta(days=1),
            values=table.values.astype(np.float32),
            calendar=self.covariates[:, : table.n_observed],
            lookback=self.lookback,
        )
        self.series_level = np.array(table.levels, dtype=object)
        self.levels = list(dict.fromkeys(table.levels))
        self.data_hash = dataset_hash(pd.DataFrame(np.nan_to_num(table.values, nan=-1.0), index=table.groups))
        self.origins = split_origins(
            self.panel.n_periods,
            self.lookback,
            self.horizon,
            self.val_periods,
            self.calibration_periods,
            self.test_periods,
        )
        self.windows = {}
        for split in SPLITS:
            windows = make_windows(self.panel, self.origins[split], self.lookback, self.horizon)
            if len(windows["target"]) == 0:
                raise SeriesTableError(f"field 'path': no {split} window has a fully observed lookback")
            self.windows[split] = windows
        self.sizes = {
            "series": len(table.groups),
            **{f"{lv}_series": int((self.series_level == lv).sum()) for lv in self.levels},
            "dropped_short_series": len(table.dropped),
            "periods": self.panel.n_periods,
            "freq": table.freq,
            **{f"{s}_windows": len(self.windows[s]["target"]) for s in SPLITS},
        }
        if table.dropped:
            log.warning(
                "dropped %d series shorter than %d periods: %s",
                len(table.dropped),
                self.spec.min_length,
                table.dropped[:10],
            )
        log.info("series forecast dataset (%s): %s", self.path, self.sizes)
        self._datasets = {s: BatchDictDataset({k: self.windows[s][k] for k in TENSOR_KEYS}) for s in SPLITS}

    def split_window(self, split: str) -> dict[str, str]:
        """First origin and first / last target period of a split, for lineage."""
        assert self.panel is not None
        origins = self.origins[split]
        last_target = min(int(origins[-1]) + self.horizon, self.panel.n_periods - 1)
        return {
            "first_origin": str(self.panel.period_start[origins[0]].date()),
            "first_target": str(self.panel.period_start[origins[0] + 1].date()),
            "last_target": str(self.panel.period_start[last_target].date()),
            "windows": str(len(self.windows[split]["target"])),
        }
