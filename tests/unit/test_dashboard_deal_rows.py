"""A deal's probability history from its own rows read by DuckDB equals the history on the whole loaded CRM.

`dashboard.deal_rows` replaces loading every table into pandas (minutes and GiB at 1M deals) by filtering the
Parquet files; the old path (`DirectorySource(...).load()` then `probability_history`) is the reference, on the
embedded CRM the tiny model was trained on (flat layout) and on a two-shard export of one deal's rows (sharded
layout, where only the deal's part is read).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.dashboard.context import build_context
from fulqrun_ml.dashboard.deal_rows import deal_rows
from fulqrun_ml.dashboard.history import probability_history
from fulqrun_ml.dashboard.queries import Filters
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FulqrunMLError


@pytest.fixture(scope="module")
def ctx(published, tmp_path_factory):
    version, _ = published
    cache = tmp_path_factory.mktemp("deal-rows-cache")
    return build_context(version.path.parent.parent, cache / "reports", cache, views_file=cache / "views.json")


@pytest.fixture(scope="module")
def deals(ctx) -> list[str]:
    """Two scored open deals of different ages: the oldest (most points) and the median one."""
    scored = ctx.warehouse.open_deals(Filters()).dropna(subset=["model_probability"])
    ordered = scored.sort_values(["age_days", "opportunity_id"], ascending=False)["opportunity_id"].tolist()
    return [ordered[0], ordered[len(ordered) // 2]]


@pytest.fixture(scope="module")
def reference(ctx, deals) -> dict[str, pd.DataFrame]:
    """The old path: every table loaded and validated (`DirectorySource`), then the history."""
    tables = ctx.crm_tables()
    return {deal: probability_history(tables, ctx.deal_model, deal) for deal in deals}


@pytest.fixture(scope="module")
def rows(ctx, deals) -> CRMTables:
    return deal_rows(ctx.crm_dir, deals[0])


def write_export(tables: CRMTables, out: Path, parts: int = 0) -> Path:
    """`tables` as a flat export (parts=0) or as `parts` identical shards, with its extraction time."""
    for name, frame in {**tables.frames(), **tables.history_frames()}.items():
        if parts:
            (out / name).mkdir(parents=True)
        for k in range(parts):
            frame.to_parquet(out / name / f"part-{k:05d}.parquet", index=False)
        if not parts:
            out.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(out / f"{name}.parquet", index=False)
    (out / "crm_export.json").write_text(json.dumps({"extracted_at": tables.extracted_at.isoformat()}))
    return out


def test_history_from_the_deals_rows_equals_the_whole_crm(ctx, deals, reference, rows):
    for deal in deals:
        new = probability_history(rows if deal == deals[0] else deal_rows(ctx.crm_dir, deal), ctx.deal_model, deal)
        assert len(reference[deal]) >= 1
        pd.testing.assert_frame_equal(new, reference[deal])


def test_the_sharded_layout_reads_only_the_deals_part(ctx, deals, reference, rows, tmp_path):
    """Two shards holding the same rows: reading more than the deal's part would count its touches and its rep's
    closes twice and move the history; read alone, the part gives the flat layout's history."""
    sharded = write_export(rows, tmp_path / "sharded", parts=2)
    again = deal_rows(sharded, deals[0])
    assert again.opportunities["id"].is_unique and again.activities["id"].is_unique
    pd.testing.assert_frame_equal(probability_history(again, ctx.deal_model, deals[0]), reference[deals[0]])


def test_rows_are_the_features_input_and_nothing_else(ctx, deals, rows):
    opp = ctx.crm_tables().opportunities.set_index("id").loc[deals[0]]
    assert set(rows.opportunities["assigned_to"]) == {opp["assigned_to"]}
    assert set(rows.activities["related_id"]) <= {deals[0]}
    assert set(rows.companies["id"]) == {opp["company_id"]}
    assert rows.organizations.empty and rows.contacts.empty
    assert rows.extracted_at == ctx.crm_tables().extracted_at


def test_an_unknown_deal_or_a_directory_without_manifest_is_named(ctx, tmp_path):
    with pytest.raises(FulqrunMLError, match="deal 00000000-0000-0000-0000-000000000000: not in the CRM"):
        deal_rows(ctx.crm_dir, "00000000-0000-0000-0000-000000000000")
    (tmp_path / "opportunities.parquet").write_bytes(b"")
    with pytest.raises(FulqrunMLError, match=r"crm_export\.json"):
        deal_rows(tmp_path, "x")
    shutil.copy(ctx.crm_dir / "crm_export.json", tmp_path / "crm_export.json")
    with pytest.raises(FulqrunMLError, match="table 'activities' is missing"):
        deal_rows(tmp_path, "x")


def test_a_later_cut_of_the_export_does_not_move_earlier_points(ctx, deals, reference, rows, tmp_path):
    """Point-in-time through the DuckDB path too: rows after a cut removed from the files, earlier points equal."""
    full = reference[deals[0]]
    cut = pd.Timestamp(full["as_of"].iloc[len(full) // 2])
    past = dataclasses.replace(
        rows,
        activities=rows.activities[rows.activities["created_at"] <= cut],
        stage_history=rows.stage_history[rows.stage_history["changed_at"] <= cut],
        extracted_at=cut,
    )
    before = probability_history(deal_rows(write_export(past, tmp_path / "past"), deals[0]), ctx.deal_model, deals[0])
    pd.testing.assert_frame_equal(before, full[full["as_of"] <= cut].reset_index(drop=True))
