"""The incremental deal-win snapshot (`data.snapshot_cache_dir`, datamodules/duckdb_snapshot_cache.py) is the
full rebuild: same frame, scoring rows, leakage audit and groups, built from the cached rows plus the new dates.

Two extracts of one simulated CRM: the older one is the CRM as it stood 70 days before the newer one's
extraction (`truncate_crm`, written independently of the builders), so the newer extract adds two grid dates
(every 35 days). A late-arriving edit of a past row must force a full rebuild, and the check is broken once on
purpose (the fingerprint made blind) to show the frame then differs. Small CRM, coarse grid: about a second each.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_scale import _canonical_times
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.datamodules import duckdb_frame, duckdb_snapshot_cache
from fulqrun_ml.datamodules.built_frame import BuiltFrame
from fulqrun_ml.datamodules.duckdb_frame import build_with_duckdb
from fulqrun_ml.datamodules.tabular import DealWinDataModule
from fulqrun_ml.features.recompute_audit import truncate_crm

GRID = {"snapshot_every_days": 35}


@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> tuple[Path, Path]:
    tables = simulate_crm(n_opportunities=300, n_companies=60, n_reps=5, seed=11).tables
    tables = dataclasses.replace(tables, **{n: _canonical_times(n, f) for n, f in tables.frames().items()})
    root = tmp_path_factory.mktemp("extracts")
    older = truncate_crm(tables, tables.extracted_at - pd.Timedelta(days=70))
    return write_crm_directory(older, root / "older"), write_crm_directory(tables, root / "newer")


def build(path: Path, cache: Path | None) -> tuple[BuiltFrame, dict]:
    module = DealWinDataModule(DirectorySource(path), **GRID, snapshot_engine="duckdb", snapshot_cache_dir=cache)
    built = build_with_duckdb(module)
    return built, module.snapshot_cache_report


def assert_same(a: BuiltFrame, b: BuiltFrame) -> None:
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    pd.testing.assert_frame_equal(a.scoring_rows, b.scoring_rows, check_exact=True)
    assert a.dates == b.dates
    assert a.leakage_audit == b.leakage_audit
    assert a.counts == b.counts
    for name, values in a.groups.items():
        assert list(values) == list(b.groups[name]), name


@pytest.fixture(scope="module")
def full_newer(extracts) -> BuiltFrame:
    return build(extracts[1], None)[0]


@pytest.fixture(scope="module")
def older_cache(extracts, tmp_path_factory) -> tuple[Path, BuiltFrame]:
    """A cache holding the older extract's build (tests copy it)."""
    cache = tmp_path_factory.mktemp("cache")
    first, report = build(extracts[0], cache)
    assert report["reused_dates"] == 0 and report["built_dates"] == len(first.dates)
    return cache, first


@pytest.fixture(scope="module")
def edited(extracts, older_cache, tmp_path_factory) -> tuple[Path, BuiltFrame]:
    """The newer extract with a late edit of a past row, and its full rebuild."""
    path = _edit_past_activity(extracts[1], tmp_path_factory.mktemp("edit") / "edited", older_cache[1].frame)
    return path, build(path, None)[0]


def _copy_cache(older_cache, tmp_path: Path) -> Path:
    return Path(shutil.copytree(older_cache[0], tmp_path / "cache"))


def test_incremental_snapshot_equals_the_full_rebuild(extracts, older_cache, full_newer, tmp_path):
    cache, first = _copy_cache(older_cache, tmp_path), older_cache[1]
    incremental, report = build(extracts[1], cache)
    assert report["reused_dates"] == len(first.dates) and report["built_dates"] == 2, report
    assert report["built_rows"] < len(incremental.frame) / 3  # only the new dates were built
    counts = dict(incremental.counts)
    assert counts.pop("snapshot_dates_reused") == len(first.dates) and counts.pop("snapshot_dates_built") == 2
    assert_same(dataclasses.replace(incremental, counts=counts), full_newer)
    # The same extract again, through the datamodule with a sampled evaluation: nothing new to build, and the
    # record says what was evaluated.
    module = DealWinDataModule(
        DirectorySource(extracts[1]), **GRID, snapshot_engine="duckdb", snapshot_cache_dir=cache, eval_sample_rows=30
    )
    module.setup()
    assert module.snapshot_cache_report["built_dates"] == 0 and module.snapshot_cache_report["built_rows"] == 0
    assert module.sizes["snapshot_dates_reused"] == len(full_newer.dates) and module.sizes["test_rows"] == 30
    test, whole = module.frames["test"], module.sizes["test_rows_sampled_from"]
    assert whole > 30 and module.eval_samples["test"]["positives"] == int(test["label"].sum())
    assert test["as_of"].is_monotonic_increasing  # drawn rows keep the split's time order
    keys = ["opportunity_id", "as_of"]
    assert len(test[keys].merge(full_newer.frame[keys])) == 30  # rows of the full rebuild's frame


def _edit_past_activity(newer: Path, out: Path, older_frame: pd.DataFrame) -> Path:
    """A copy of the newer extract where one activity of a deal in the older frame, stamped before one of its
    snapshots, changes type (a back-office correction arriving late)."""
    shutil.copytree(newer, out)
    activities = pd.read_parquet(out / "activities.parquet")
    touched = older_frame[older_frame["calls_total"] > 0].iloc[0]
    row = activities.index[
        (activities["related_id"] == touched["opportunity_id"])
        & (activities["type"] == "call")
        & (activities["created_at"] <= touched["as_of"])
    ][0]
    activities.at[row, "type"] = "email"
    activities.to_parquet(out / "activities.parquet", index=False)
    return out


def test_a_late_edit_of_a_past_row_forces_a_full_rebuild(older_cache, edited, tmp_path):
    rebuilt, report = build(edited[0], _copy_cache(older_cache, tmp_path))
    assert report["reused_dates"] == 0 and "activities" in report["reason"], report
    assert_same(dataclasses.replace(rebuilt, counts=_without_cache_counts(rebuilt)), edited[1])


def test_the_fingerprint_is_what_catches_the_edit(older_cache, edited, tmp_path, monkeypatch):
    """Broken on purpose: with a fingerprint blind to the data, the edited extract reuses stale rows and the
    frame is no longer the full rebuild's (so the check above is what keeps it right)."""
    monkeypatch.setattr(duckdb_snapshot_cache, "fingerprint", lambda db, cutoffs: [{} for _ in cutoffs])
    stale, report = build(edited[0], _copy_cache(older_cache, tmp_path))
    assert report["reused_dates"] > 0
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(stale.frame, edited[1].frame, check_exact=True)


def _without_cache_counts(built: BuiltFrame) -> dict:
    return {k: v for k, v in built.counts.items() if not k.startswith("snapshot_dates_")}


def test_cache_dir_needs_the_duckdb_engine():
    with pytest.raises(ValueError, match="snapshot_cache_dir"):
        DealWinDataModule(lambda: None, snapshot_cache_dir="/tmp/x")


def test_the_entry_address_follows_the_settings_and_the_builders_code(monkeypatch):
    key = duckdb_snapshot_cache.cache_key({"snapshot_every_days": 14})
    assert key == duckdb_snapshot_cache.cache_key({"snapshot_every_days": 14})
    assert key != duckdb_snapshot_cache.cache_key({"snapshot_every_days": 7})
    code = duckdb_snapshot_cache._builder_code()
    monkeypatch.setattr(duckdb_snapshot_cache, "_builder_code", lambda: [*code[:-1], ("an edited constant",)])
    assert key != duckdb_snapshot_cache.cache_key({"snapshot_every_days": 14})
    monkeypatch.undo()
    own = (duckdb_frame._assemble_sql, duckdb_frame.SNAPSHOT_COLUMNS)
    with_caller = duckdb_snapshot_cache.cache_key({"snapshot_every_days": 14}, own)
    assert with_caller != key
    assert with_caller != duckdb_snapshot_cache.cache_key({"snapshot_every_days": 14}, (*own[:-1], ("edited",)))
