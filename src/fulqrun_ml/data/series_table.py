"""A user's long-format series table -> one validated, dense panel on the table's own frequency.

Input: one row per (series, period) with id columns, a time column, a numeric target and optional covariates:
known-future ones (holidays, promotions, planned calls: a value is known for future periods, so rows after a
series' last observation with an empty target carry them for prediction) and static categoricals (one value
per series). The rules, each documented in docs/forecasting.md and raising a `SeriesTableError` that names the
column (and the series id where one is at fault):

- frequency: `pandas.infer_freq` per series (series with >= 3 periods and no gaps); all must agree (one
  frequency per table), and every timestamp of every series must lie on that grid.
- gaps inside a series: `gap_fill="zero"` (default: no row means nothing sold / booked) or `"error"`.
- different lengths: periods before a series' first or after its last observation are "not observed" (NaN):
  no window reads them and no metric scores them.
- too short: a series with fewer than `min_length` observed periods is dropped (listed in `dropped`) or, with
  `short_series="error"`, refused.
- hierarchy: `hierarchy=[region, store]` (top to bottom, the same columns as `id_cols`) adds the total and
  every intermediate level as summed series, so the forecaster and reconciliation see every level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fulqrun_ml.data.sources import SourceError
from fulqrun_ml.data.user_tables import _parse_time_column, _read_user_table

TOTAL = "total"
KEY_SEP = "/"


class SeriesTableError(SourceError):
    """A series table breaks a rule; the message names the column (and the series id where one is at fault)."""


@dataclass(frozen=True)
class SeriesTableSpec:
    """How to read a table: which columns are ids, time, target and covariates, and the data rules."""

    id_cols: tuple[str, ...]
    time_col: str
    target: str
    known_future_cols: tuple[str, ...] = ()
    static_cols: tuple[str, ...] = ()
    hierarchy: tuple[str, ...] = ()
    gap_fill: Literal["zero", "error"] = "zero"
    short_series: Literal["drop", "error"] = "drop"
    min_length: int = 0


@dataclass
class SeriesTable:
    """The table on one period grid. values [G, T] (NaN = not observed), known [G, T + extra, K] (the known-future
    covariates, `extra` periods past the last observation where the table gives them), static codes [G, S]."""

    spec: SeriesTableSpec
    freq: str
    periods: pd.DatetimeIndex  # observed grid plus the future periods that carry known-future values
    n_observed: int  # periods[:n_observed] hold targets
    groups: list[str]
    levels: list[str]  # level name of each group ("series" without a hierarchy)
    values: np.ndarray
    known: np.ndarray
    static: np.ndarray
    static_vocab: dict[str, list[str]]
    dropped: list[str] = field(default_factory=list)
    summing: np.ndarray | None = None  # S [n_nodes, n_bottom] with a hierarchy (groups are the nodes, bottom last)


def read_series_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV / Parquet table (the same reader as `data=table`), with unreadable content named by path."""
    path = Path(str(path))
    try:
        return _read_user_table(path)
    except SourceError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SeriesTableError(f"field 'path': {path.name} cannot be read as a table ({type(exc).__name__})") from exc


def _check_columns(frame: pd.DataFrame, spec: SeriesTableSpec) -> None:
    if not spec.id_cols:
        raise SeriesTableError("field 'id_cols': name at least one id column")
    named = {
        "id_cols": spec.id_cols,
        "time_col": (spec.time_col,),
        "target": (spec.target,),
        "known_future_cols": spec.known_future_cols,
        "static_cols": spec.static_cols,
    }
    for key, cols in named.items():
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise SeriesTableError(f"field '{key}': column(s) {missing} not in the table (has {list(frame.columns)})")
    if spec.hierarchy and list(spec.hierarchy) != list(spec.id_cols):
        raise SeriesTableError(
            f"field 'hierarchy': {list(spec.hierarchy)} must list the id_cols {list(spec.id_cols)} top to bottom"
        )


def _series_keys(frame: pd.DataFrame, id_cols: Sequence[str]) -> pd.Series:
    if frame[list(id_cols)].isna().any().any():
        bad = [c for c in id_cols if frame[c].isna().any()]
        raise SeriesTableError(f"field 'id_cols': column(s) {bad} have empty ids")
    return frame[list(id_cols)].astype(str).agg(KEY_SEP.join, axis=1)


def infer_table_freq(times: pd.Series, keys: pd.Series, time_col: str) -> str:
    """One pandas frequency for the whole table (see the module docstring for the rule)."""
    found: dict[str, list[str]] = {}
    for key, t in times.groupby(keys, sort=True):
        index = pd.DatetimeIndex(t.sort_values().unique())
        if len(index) >= 3:
            freq = pd.infer_freq(index)
            if freq is not None:
                found.setdefault(freq, []).append(str(key))
    if not found:
        raise SeriesTableError(
            f"field '{time_col}': no series has 3+ regularly spaced periods, so the frequency cannot be inferred"
        )
    if len(found) > 1:
        detail = "; ".join(f"{f}: {ids[:3]}" for f, ids in found.items())
        raise SeriesTableError(f"field '{time_col}': series have different frequencies ({detail}); use one per table")
    freq = next(iter(found))
    return freq


def _grid(times: pd.Series, keys: pd.Series, freq: str, time_col: str) -> pd.DatetimeIndex:
    grid = pd.date_range(times.min(), times.max(), freq=freq)
    off = ~times.isin(grid)
    if off.any():
        raise SeriesTableError(
            f"field '{time_col}': series '{keys[off].iloc[0]}' has timestamp {times[off].iloc[0]} off the table's "
            f"{freq} grid"
        )
    return grid


def _static_codes(frame: pd.DataFrame, keys: pd.Series, spec: SeriesTableSpec) -> tuple[pd.DataFrame, dict]:
    codes, vocab = {}, {}
    for col in spec.static_cols:
        per_series = frame.groupby(keys)[col].nunique(dropna=False)
        if (per_series > 1).any():
            raise SeriesTableError(
                f"field 'static_cols': column '{col}' changes within series '{per_series[per_series > 1].index[0]}'"
            )
        values = frame.groupby(keys)[col].first().astype(str)
        vocab[col] = sorted(values.unique().tolist())
        codes[col] = values.map({v: i for i, v in enumerate(vocab[col])})
    return pd.DataFrame(codes), vocab


def build_series_table(frame: pd.DataFrame, spec: SeriesTableSpec) -> SeriesTable:
    """Validate and pivot a long table into a `SeriesTable` (bottom series, plus every hierarchy level)."""
    _check_columns(frame, spec)
    frame = frame.copy()
    try:
        frame[spec.time_col] = _parse_time_column(frame[spec.time_col], spec.time_col).dt.tz_localize(None)
    except SeriesTableError:
        raise
    except SourceError as exc:
        raise SeriesTableError(f"field '{spec.time_col}': {exc}") from exc
    keys = _series_keys(frame, spec.id_cols)
    target = frame[spec.target]
    if not (pd.api.types.is_numeric_dtype(target) or target.isna().all()):
        numeric = pd.to_numeric(target, errors="coerce")
        bad = target.notna() & numeric.isna()
        raise SeriesTableError(
            f"field '{spec.target}': non-numeric value {target[bad].iloc[0]!r} in series '{keys[bad].iloc[0]}'"
        )
    target = target.astype(np.float64)
    if np.isinf(target).any():
        raise SeriesTableError(f"field '{spec.target}': infinite value in series '{keys[np.isinf(target)].iloc[0]}'")
    dup = pd.DataFrame({"k": keys, "t": frame[spec.time_col]}).duplicated()
    if dup.any():
        raise SeriesTableError(
            f"field '{spec.time_col}': duplicate timestamp {frame[spec.time_col][dup].iloc[0]} in series "
            f"'{keys[dup].iloc[0]}'"
        )
    for col in spec.known_future_cols:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise SeriesTableError(f"field 'known_future_cols': column '{col}' must be numeric (0/1 flags, amounts)")
    observed = target.notna()
    # An empty target before a series' last observed period is a missing value, not a future row: refuse it.
    last_seen = frame[spec.time_col].where(observed).groupby(keys).transform("max")
    hole = ~observed & (frame[spec.time_col] <= last_seen)
    if hole.any():
        raise SeriesTableError(
            f"field '{spec.target}': empty (NaN) target at {frame[spec.time_col][hole].iloc[0]} in series "
            f"'{keys[hole].iloc[0]}' (drop the row: a gap is filled by the gap_fill rule)"
        )
    freq = infer_table_freq(frame[spec.time_col][observed], keys[observed], spec.time_col)
    grid = _grid(frame[spec.time_col], keys, freq, spec.time_col)
    n_observed = int(grid.searchsorted(frame[spec.time_col][observed].max()) + 1)
    wide = pd.DataFrame({"k": keys, "t": frame[spec.time_col], "y": target}).pivot(index="k", columns="t", values="y")
    wide = wide.reindex(columns=grid)
    times = frame[spec.time_col]
    span = pd.DataFrame({"first": times[observed].groupby(keys[observed]).min(), "last": last_seen.groupby(keys).max()})
    if span["first"].isna().any():
        raise SeriesTableError(f"field '{spec.target}': series '{span.index[span['first'].isna()][0]}' has no values")
    inside = (grid.values[None, :] >= span["first"].reindex(wide.index).values[:, None]) & (
        grid.values[None, :] <= span["last"].reindex(wide.index).values[:, None]
    )
    gaps = inside & wide.isna().to_numpy()
    if gaps.any() and spec.gap_fill == "error":
        g, t = np.argwhere(gaps)[0]
        raise SeriesTableError(f"field '{spec.time_col}': series '{wide.index[g]}' has no row for {grid[t].date()}")
    values = np.where(gaps, 0.0, wide.to_numpy(dtype=np.float64))[:, :n_observed]
    lengths = inside[:, :n_observed].sum(axis=1)
    short = wide.index[lengths < spec.min_length].tolist()
    if short and spec.short_series == "error":
        raise SeriesTableError(
            f"field '{spec.target}': series '{short[0]}' has {int(lengths[wide.index.get_loc(short[0])])} periods, "
            f"fewer than min_length={spec.min_length}"
        )
    keep = lengths >= spec.min_length
    if not keep.any():
        raise SeriesTableError(f"field '{spec.target}': every series is shorter than min_length={spec.min_length}")
    known = np.zeros((len(wide), len(grid), len(spec.known_future_cols)))
    for i, col in enumerate(spec.known_future_cols):
        cov = pd.DataFrame({"k": keys, "t": times, "v": frame[col].astype(np.float64)})
        known[..., i] = cov.pivot(index="k", columns="t", values="v").reindex(index=wide.index, columns=grid).fillna(0)
    static, vocab = _static_codes(frame, keys, spec)
    static_codes = static.reindex(wide.index).to_numpy(dtype=np.int64) if len(spec.static_cols) else None
    bottom = SeriesTable(
        spec,
        freq,
        grid,
        n_observed,
        [str(k) for k in wide.index[keep]],
        ["series"] * int(keep.sum()),
        values[keep],
        known[keep],
        static_codes[keep] if static_codes is not None else np.zeros((int(keep.sum()), 0), dtype=np.int64),
        vocab,
        dropped=short,
    )
    return add_hierarchy(bottom) if spec.hierarchy else bottom


def summing_matrix(groups: Sequence[str], depth: int) -> tuple[list[str], list[str], np.ndarray]:
    """For bottom keys 'a/b/c' of `depth` parts: every node top-down (total, 'a', 'a/b', then the bottom keys),
    each node's level index name, and S [n_nodes, n_bottom] with S[i, j] = 1 if bottom j rolls up into node i."""
    parts = [g.split(KEY_SEP) for g in groups]
    if any(len(p) != depth for p in parts):
        raise SeriesTableError(f"field 'hierarchy': ids must have {depth} parts joined by '{KEY_SEP}'")
    nodes, levels = [TOTAL], [TOTAL]
    for d in range(1, depth + 1):
        # the bottom level keeps the input order, so S's last rows are the identity (bottom-up relies on it)
        level_nodes = [KEY_SEP.join(p) for p in parts] if d == depth else sorted({KEY_SEP.join(p[:d]) for p in parts})
        for node in level_nodes:
            nodes.append(node)
            levels.append(str(d))
    prefix = [KEY_SEP.join(p) for p in parts]
    matrix = np.zeros((len(nodes), len(groups)))
    for i, node in enumerate(nodes):
        matrix[i] = [node == TOTAL or key == node or key.startswith(node + KEY_SEP) for key in prefix]
    return nodes, levels, matrix


def add_hierarchy(bottom: SeriesTable) -> SeriesTable:
    """Bottom series -> every level (summed; a child not yet observed contributes 0 to its parents, and a parent
    is observed wherever any child is)."""
    cols = bottom.spec.hierarchy
    nodes, depth_levels, s = summing_matrix(bottom.groups, len(cols))
    names = {TOTAL: TOTAL, **{str(d + 1): c for d, c in enumerate(cols)}}
    observed = np.isfinite(bottom.values)
    values = s @ np.nan_to_num(bottom.values)
    values = np.where((s @ observed) > 0, values, np.nan)
    # Known-future covariates of a parent: the children's mean (a holiday flag stays a flag; promotions a share).
    known = np.einsum("nb,btk->ntk", s, bottom.known) / s.sum(axis=1)[:, None, None]
    static = np.zeros((len(nodes), 0), dtype=np.int64)  # statics describe bottom series; parents have none
    return SeriesTable(
        bottom.spec,
        bottom.freq,
        bottom.periods,
        bottom.n_observed,
        nodes,
        [names[lv] for lv in depth_levels],
        values,
        known,
        static if bottom.static.shape[1] == 0 else _parent_static(bottom, s),
        bottom.static_vocab,
        bottom.dropped,
        s,
    )


def _parent_static(bottom: SeriesTable, s: np.ndarray) -> np.ndarray:
    """A parent's static codes: its children's, where they all agree; else an extra code (len(vocab)) = 'mixed'."""
    out = np.zeros((s.shape[0], bottom.static.shape[1]), dtype=np.int64)
    for i, row in enumerate(s.astype(bool)):
        for j, col in enumerate(bottom.spec.static_cols):
            children = np.unique(bottom.static[row, j])
            out[i, j] = children[0] if len(children) == 1 else len(bottom.static_vocab[col])
    return out
