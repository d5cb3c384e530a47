"""Series-table rules: frequency inference, gaps, lengths, short series, hierarchy sums, and bad tables named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.series_fixture import make_series_fixture
from fulqrun_ml.data.series_table import (
    SeriesTableError,
    SeriesTableSpec,
    build_series_table,
    read_series_table,
    summing_matrix,
)

SPEC = SeriesTableSpec(id_cols=("store",), time_col="week", target="sales")


def weekly(stores: dict[str, list[float]], start: str = "2024-01-01", freq: str = "W-MON") -> pd.DataFrame:
    rows = []
    for store, values in stores.items():
        for t, v in zip(pd.date_range(start, periods=len(values), freq=freq), values, strict=True):
            rows.append({"store": store, "week": t, "sales": v})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("freq", "expected"), [("W-MON", "W-MON"), ("MS", "MS"), ("D", "D")])
def test_frequency_is_inferred(freq: str, expected: str) -> None:
    table = build_series_table(weekly({"a": [1.0] * 8, "b": [2.0] * 6}, freq=freq), SPEC)
    assert table.freq == expected
    assert table.values.shape == (2, 8)


def test_mixed_frequencies_are_refused_naming_the_time_column() -> None:
    frame = pd.concat([weekly({"a": [1.0] * 6}), weekly({"b": [1.0] * 6}, freq="MS")])
    with pytest.raises(SeriesTableError, match=r"field 'week'.*different frequencies"):
        build_series_table(frame, SPEC)


def test_off_grid_timestamp_is_refused_naming_the_series() -> None:
    frame = weekly({"a": [1.0] * 6, "b": [1.0] * 6})
    frame.loc[frame["store"].eq("b").idxmax(), "week"] += pd.Timedelta(days=2)
    with pytest.raises(SeriesTableError, match=r"series 'b'.*off the table's W-MON grid"):
        build_series_table(frame, SPEC)


def test_gap_is_zero_filled_or_refused() -> None:
    frame = weekly({"a": [5.0] * 8, "b": [3.0] * 8}).drop(index=3)  # a has no row for its 4th week
    table = build_series_table(frame, SPEC)
    assert table.values[0, 3] == 0.0 and table.values[0, 4] == 5.0
    strict = SeriesTableSpec(("store",), "week", "sales", gap_fill="error")
    with pytest.raises(SeriesTableError, match="series 'a' has no row for 2024-01-22"):
        build_series_table(frame, strict)


def test_series_of_different_lengths_are_not_observed_outside_their_span() -> None:
    table = build_series_table(weekly({"a": [1.0] * 10, "b": [2.0] * 4}, start="2024-01-01"), SPEC)
    b = table.values[table.groups.index("b")]
    assert np.isfinite(b[:4]).all() and np.isnan(b[4:]).all()  # b ended early: not observed, not zero


def test_short_series_are_dropped_or_refused() -> None:
    frame = weekly({"a": [1.0] * 10, "b": [2.0] * 4})
    table = build_series_table(frame, SeriesTableSpec(("store",), "week", "sales", min_length=6))
    assert table.groups == ["a"] and table.dropped == ["b"]
    strict = SeriesTableSpec(("store",), "week", "sales", min_length=6, short_series="error")
    with pytest.raises(SeriesTableError, match="series 'b' has 4 periods, fewer than min_length=6"):
        build_series_table(frame, strict)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: f.drop(columns="week"), "field 'time_col': column\\(s\\) \\['week'\\] not in the table"),
        (lambda f: f.drop(columns="store"), "field 'id_cols'"),
        (lambda f: pd.concat([f, f.iloc[[2]]]), "field 'week': duplicate timestamp 2024-01-15.*series 'a'"),
        (lambda f: f.assign(sales=f["sales"].astype(object).where(f.index != 1, "n/a")), "field 'sales': non-numeric"),
        (lambda f: f.assign(sales=f["sales"].where(f.index != 1, np.inf)), "field 'sales': infinite value"),
        (lambda f: f.assign(sales=f["sales"].where(f.index != 1, np.nan)), "field 'sales': empty \\(NaN\\) target"),
        (lambda f: f.assign(week="not a date"), "field 'week': time_col 'week': 12 value\\(s\\) are not dates"),
    ],
)
def test_bad_tables_get_an_error_naming_the_field(mutate, match: str) -> None:
    with pytest.raises(SeriesTableError, match=match):
        build_series_table(mutate(weekly({"a": [1.0] * 6, "b": [2.0] * 6})), SPEC)


def test_unknown_id_and_covariate_columns_are_named() -> None:
    frame = weekly({"a": [1.0] * 6})
    with pytest.raises(SeriesTableError, match="field 'id_cols': column\\(s\\) \\['shop'\\]"):
        build_series_table(frame, SeriesTableSpec(("shop",), "week", "sales"))
    with pytest.raises(SeriesTableError, match="field 'known_future_cols'"):
        build_series_table(frame, SeriesTableSpec(("store",), "week", "sales", known_future_cols=("promo",)))


def test_hostile_paths_are_refused_by_name(tmp_path) -> None:
    with pytest.raises(Exception, match="does not exist") as missing:
        read_series_table(tmp_path / "nope.csv")
    assert "Traceback" not in str(missing.value)
    with pytest.raises(Exception, match="does not exist"):
        read_series_table(tmp_path)  # a directory
    (tmp_path / "passwd").write_text("root:x:0:0")
    with pytest.raises(Exception, match=r"only \.csv and \.parquet"):
        read_series_table(tmp_path / "passwd")
    (tmp_path / "bad.parquet").write_bytes(b"\x00\x01garbage")
    with pytest.raises(SeriesTableError, match=r"field 'path': bad\.parquet cannot be read"):
        read_series_table(tmp_path / "bad.parquet")


def test_hierarchy_adds_every_level_and_parents_sum_their_children() -> None:
    fixture = make_series_fixture(n_regions=2, stores_per_region=3, weeks=60, future_weeks=2, seed=3)
    spec = SeriesTableSpec(
        ("region", "store"), "week", "sales", ("holiday", "promo"), ("store_type",), ("region", "store")
    )
    table = build_series_table(fixture.table, spec)
    assert table.levels.count("total") == 1 and table.levels.count("region") == 2 and table.levels.count("store") == 6
    assert table.n_observed == 60 and len(table.periods) == 62  # the future rows carry known covariates
    bottom = table.values[-6:]
    np.testing.assert_allclose(table.values[:3], table.summing[:3] @ bottom)
    np.testing.assert_allclose(table.values[0], bottom.sum(axis=0))
    with pytest.raises(SeriesTableError, match="field 'hierarchy'"):
        build_series_table(fixture.table, SeriesTableSpec(("region", "store"), "week", "sales", hierarchy=("store",)))


def test_summing_matrix_rolls_each_leaf_into_its_ancestors() -> None:
    nodes, _levels, s = summing_matrix(["a/x", "a/y", "b/z"], 2)
    assert nodes == ["total", "a", "b", "a/x", "a/y", "b/z"]  # bottom in input order: S ends with I
    np.testing.assert_array_equal(s, [[1, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
