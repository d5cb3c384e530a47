"""Point-in-time snapshots: which (deal, as_of) pairs become training rows, with which label.

A row exists for each deal open at `as_of` (on a regular grid) that closes within `horizon_days` after it;
its label is whether that close was a win, and `label_time` is when the label became known. Features are
computed elsewhere from data at or before as_of (`features/deal_features.py`).

Splits are by time, with an embargo: a training row must have its label known before validation begins,
and a validation row before test begins, so no label from a later period informs an earlier one.
The embargo censors: near a boundary only the deals that close quickly keep their rows, so a split's
label mix drifts from the holdout's. `TimeSplit.censoring_weights` undoes that by inverse probability of
observation, which is what calibration fits against (measured on the default simulator: the validation win
rate is 0.491 raw, 0.524 weighted, vs 0.526 on the holdout). Delays longer than the validation period can
never be observed there; the training period's delay-label mix restores them by label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import OPEN_STAGES, STAGE_DEFAULT_PROBABILITY

WEIGHT_COLUMN = "censoring_weight"  # TimeSplit.censoring_weights, per row of every split frame


def stage_as_of(stage_history: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Latest stage per opportunity from history rows at or before as_of (stage, entered_at, changes)."""
    known = stage_history[stage_history["changed_at"] <= as_of]
    grouped = known.sort_values("changed_at", kind="stable").groupby("opportunity_id", sort=False)
    return pd.DataFrame(
        {
            "stage": grouped["to_stage"].last(),
            "stage_entered_at": grouped["changed_at"].last(),
            "stage_changes": grouped.size() - 1,
        }
    )


def open_deals_as_of(tables: CRMTables, as_of: pd.Timestamp) -> pd.DataFrame:
    """Deals open at as_of with their stage then and the rep's stage-based probability."""
    stages = stage_as_of(tables.stage_history, as_of)
    stages = stages[stages["stage"].isin(OPEN_STAGES)]
    return pd.DataFrame(
        {
            "opportunity_id": stages.index.to_numpy(),
            "as_of": as_of,
            "stage_index": stages["stage"].map(OPEN_STAGES.index).to_numpy(),
            "rep_probability": stages["stage"].map(STAGE_DEFAULT_PROBABILITY).to_numpy(),
        }
    )


def snapshot_dates(tables: CRMTables, every_days: int, warmup_days: int, horizon_days: int) -> list[pd.Timestamp]:
    """A regular as_of grid, starting after a warm-up (so history exists) and ending one horizon before
    extraction (so every label inside the horizon has been observed)."""
    first = tables.opportunities["created_at"].min().normalize() + pd.Timedelta(days=warmup_days)
    last = tables.extracted_at - pd.Timedelta(days=horizon_days)
    return list(pd.date_range(first, last, freq=f"{every_days}D"))


def deal_win_snapshots(tables: CRMTables, as_of_dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
    """One row per deal open at each as_of that closes within the horizon: label and label_time."""
    closes = tables.stage_history[tables.stage_history["to_stage"].isin(["closed_won", "closed_lost"])]
    closes = closes.set_index("opportunity_id")
    rows = []
    for as_of in as_of_dates:
        open_now = open_deals_as_of(tables, as_of)
        closed_at = closes["changed_at"].reindex(open_now["opportunity_id"]).to_numpy()
        outcome = closes["to_stage"].reindex(open_now["opportunity_id"]).to_numpy()
        in_horizon = pd.notna(closed_at) & (closed_at <= as_of + pd.Timedelta(days=horizon_days))
        open_now = open_now[in_horizon].assign(
            label=(outcome[in_horizon] == "closed_won").astype(np.float32),
            label_time=closed_at[in_horizon],
        )
        rows.append(open_now)
    return pd.concat(rows, ignore_index=True)


@dataclass(frozen=True)
class TimeSplit:
    """Boundaries of a time split: train < val_start <= val < test_start <= test."""

    val_start: pd.Timestamp
    test_start: pd.Timestamp

    def assign(self, snapshots: pd.DataFrame) -> pd.Series:
        """'train' / 'val' / 'test' per row, or 'embargoed' where the label lands in a later period."""
        known = snapshots["label_time"]
        split = self.period_of(snapshots)
        split[(split == "train") & (known >= self.val_start)] = "embargoed"
        split[(split == "val") & (known >= self.test_start)] = "embargoed"
        return split

    def censoring_weights(self, snapshots: pd.DataFrame, split: pd.Series) -> np.ndarray:
        """Per kept row, 1 / P(a row with this label delay survives the embargo), normalised to mean 1 per split.

        Why: the embargo keeps a train/val row only if its label is known before the next period starts,
        i.e. if `as_of + delay < boundary`. Assuming every as_of date of a period draws the same kind of
        deals (stationarity within a period), a row with delay d is kept on the fraction
        #{period dates t: t + d < boundary} / #{period dates} of the grid; weighting it by the inverse
        (Horvitz-Thompson) gives back the uncensored mix. Deals slower than the whole period are never
        observed there and cannot be re-weighted (they are rare: the default period is ~70 days, the
        holdout's 90th percentile delay ~66). Test rows are fully observed (the grid ends one horizon
        before extraction): weight 1. Rows embargoed by the horizon (`label_time = as_of + horizon`) all
        share one delay, so their weights are all 1 after normalising. Written by hand: this is a
        two-line count over the as_of grid, not worth a survival library.
        """
        weights = np.ones(len(snapshots), dtype=np.float64)
        periods = self.period_of(snapshots)
        # to_datetime: a CSV/Parquet export can hand over label times as an object column of Timestamps.
        delays = (pd.to_datetime(snapshots["label_time"]) - pd.to_datetime(snapshots["as_of"])).to_numpy()
        longest: dict[str, np.timedelta64] = {}
        for name, boundary in (("train", self.val_start), ("val", self.test_start)):
            kept = (split == name).to_numpy()
            if not kept.any():
                continue
            # The period's grid: every as_of date that produced a row of this period, kept or embargoed.
            grid = pd.DatetimeIndex(snapshots.loc[(periods == name).to_numpy(), "as_of"].unique())
            windows = (boundary - grid).to_numpy()  # the room each date leaves before the boundary
            longest[name] = windows.max()
            observable = (windows[None, :] > delays[kept][:, None]).sum(axis=1)
            weights[kept] = len(grid) / np.maximum(observable, 1)
        self._restore_unobservable_labels(snapshots, split, delays, weights, longest)
        for name in ("train", "val"):
            kept = (split == name).to_numpy()
            if kept.any():
                weights[kept] /= weights[kept].mean()
        return weights

    @staticmethod
    def _restore_unobservable_labels(
        snapshots: pd.DataFrame,
        split: pd.Series,
        delays: np.ndarray,
        weights: np.ndarray,
        longest: dict[str, np.timedelta64],
    ) -> None:
        """Re-weight the validation rows by label for the delays its period can never observe (in place).

        Why: a validation period shorter than the slowest closes never sees a label that takes longer than its
        longest window, so no inverse-probability weight can bring those rows back, and when wins close
        slower than losses the validation win rate stays low. A Platt intercept fitted there then
        under-predicts in production (measured by `monitor simulate` on a 539-day CRM: a 3-date validation
        period, win rate 0.571 weighted vs 0.64 on the holdout; the calibrated holdout ECE 0.125 against 0.061
        uncalibrated). The training period is long, so it observes those delays: its weighted share r_c of
        label c's rows with a delay beyond validation's longest window estimates what validation misses, and
        validation's rows of label c get 1 / (1 - r_c) (stationarity of the delay-label mix, as above). Only
        for 0/1 labels; the training period's own missing tail (delays beyond its longest window, possible
        only when it is shorter than the horizon) cannot be estimated from anywhere and is left alone.
        """
        train, val = (split == "train").to_numpy(), (split == "val").to_numpy()
        if "label" not in snapshots or not train.any() or not val.any():
            return
        labels = snapshots["label"].to_numpy(dtype=np.float64)
        if not np.isin(labels[train | val], (0.0, 1.0)).all():
            return
        unseen = train & (delays >= longest["val"])
        for label in (0.0, 1.0):
            of_label = train & (labels == label)
            total = weights[of_label].sum()
            if total == 0:
                continue
            missed = min(weights[unseen & (labels == label)].sum() / total, 0.95)  # 0.95: never divide by ~0
            weights[val & (labels == label)] /= 1.0 - missed

    def period_of(self, snapshots: pd.DataFrame) -> pd.Series:
        """'train' / 'val' / 'test': the period a row's as_of falls in, before the embargo."""
        as_of = snapshots["as_of"]
        period = pd.Series("test", index=snapshots.index)
        period[as_of < self.test_start] = "val"
        period[as_of < self.val_start] = "train"
        return period


def time_split(as_of_dates: list[pd.Timestamp], val_fraction: float, test_fraction: float) -> TimeSplit:
    """Cut the as_of grid into contiguous train / val / test periods."""
    n = len(as_of_dates)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} snapshot dates are too few for val={val_fraction}, test={test_fraction}")
    return TimeSplit(val_start=as_of_dates[n - n_test - n_val], test_start=as_of_dates[n - n_test])
