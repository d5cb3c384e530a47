"""The independent leakage check (`features/recompute_audit.py`): snapshot rows recomputed from the CRM cut at
their as_of. It trusts no builder's report, so each test plants a feature that reads one table's future - the
opportunities row, stage history, activities, the companies and users rows, and both history tables - and
expects the check to name it; the real builders pass on clean simulated data."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.contract import HISTORY_COLUMNS, CRMTables
from fulqrun_ml.data.snapshots import snapshot_dates
from fulqrun_ml.datamodules.task_builders import (
    AccountBuilder,
    CloseTimingBuilder,
    DealWinBuilder,
    LeadConversionBuilder,
)
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.features.recompute_audit import ROW_TIME, recompute_audit, sample_rows, truncate_crm

SAMPLE = {"rows": 100, "max_dates": 5, "seed": 0}


@pytest.fixture(scope="module")
def dates(tiny_crm):
    return snapshot_dates(tiny_crm.tables, every_days=28, warmup_days=60, horizon_days=90)


@pytest.fixture(scope="module")
def deal_rows(tiny_crm, dates):
    """The deal-win snapshot rows the check samples (sampling first keeps the planted builds small)."""
    snaps = DealWinBuilder().snapshots(tiny_crm.tables, dates, 90)
    return sample_rows(snaps, SAMPLE["rows"], SAMPLE["max_dates"], SAMPLE["seed"])[["opportunity_id", "as_of"]]


def test_truncation_keeps_only_what_existed_at_as_of(tiny_crm):
    tables = tiny_crm.tables
    as_of = tables.stage_history["changed_at"].quantile(0.3)
    cut = truncate_crm(tables, as_of)
    for name, column in ROW_TIME.items():
        frame = cut.history(name) if name in HISTORY_COLUMNS else cut.table(name)
        full = tables.history(name) if name in HISTORY_COLUMNS else tables.table(name)
        assert (frame[column] <= as_of).all(), name
        assert len(frame) == int((full[column] <= as_of).sum()), name
    assert len(cut.company_history) < len(tables.company_history)  # versions after as_of really exist
    # Attributes are the version valid at as_of, not today's row.
    versions = tables.company_history[tables.company_history["valid_from"] <= as_of]
    at_as_of = versions.drop_duplicates("company_id", keep="last").set_index("company_id")["employee_count"]
    cut_counts = cut.companies.set_index("id")["employee_count"]
    assert (cut_counts.reindex(at_as_of.index).to_numpy() == at_as_of.to_numpy()).all()
    assert (cut_counts != tables.companies.set_index("id")["employee_count"].reindex(cut_counts.index)).any()
    # Rewritten-in-place fields hold what was knowable: no deal is closed yet unless its close is recorded.
    closed = cut.opportunities["stage"].isin(["closed_won", "closed_lost"])
    recorded = cut.stage_history[cut.stage_history["to_stage"].isin(["closed_won", "closed_lost"])]
    assert set(cut.opportunities.loc[closed, "id"]) == set(recorded["opportunity_id"])
    assert cut.opportunities["close_date"].isna().all() and cut.opportunities["meddpicc_score"].isna().all()


@pytest.mark.parametrize(
    "builder",
    [DealWinBuilder(), CloseTimingBuilder(), LeadConversionBuilder(), AccountBuilder("expansion")],
    ids=lambda b: b.name,
)
def test_the_real_builders_pass_on_clean_simulated_data(builder, tiny_crm, dates):
    snaps = builder.snapshots(tiny_crm.tables, dates, 90)
    features = builder.features(tiny_crm.tables, snaps)
    report = recompute_audit(
        tiny_crm.tables, features, builder.features, builder.entity, builder.feature_spec.names, **SAMPLE
    )
    assert report.mismatches == {} and report.rows_checked >= 60 and report.as_of_dates >= 4


def _current(tables: CRMTables, table: str, column: str, ids: pd.Series) -> np.ndarray:
    return tables.table(table).set_index("id")[column].reindex(ids).to_numpy()


def _newest_version(tables: CRMTables, history: str, key: str, column: str, ids: pd.Series) -> np.ndarray:
    latest = tables.history(history).drop_duplicates(key, keep="last").set_index(key)
    return latest[column].reindex(ids).to_numpy()


def _deal_company(tables: CRMTables, index: pd.DataFrame) -> pd.Series:
    return tables.opportunities.set_index("id")["company_id"].reindex(index["opportunity_id"])


def _deal_rep(tables: CRMTables, index: pd.DataFrame) -> pd.Series:
    return tables.opportunities.set_index("id")["assigned_to"].reindex(index["opportunity_id"])


# One leak per table: (feature overwritten, the leaky value computed from the whole table, not the past).
PLANTED = {
    "opportunities": (
        "stage",
        lambda t, i: _current(t, "opportunities", "stage", i["opportunity_id"]),
    ),
    "stage_history": (
        "stage_changes",
        lambda t, i: t.stage_history.groupby("opportunity_id").size().reindex(i["opportunity_id"]).to_numpy(float),
    ),
    "activities": (
        "activities_total",
        lambda t, i: t.activities.groupby("related_id").size().reindex(i["opportunity_id"]).fillna(0).to_numpy(float),
    ),
    "companies": (
        "employee_count",
        lambda t, i: _current(t, "companies", "employee_count", _deal_company(t, i)).astype(float),
    ),
    "users": ("region", lambda t, i: _current(t, "users", "region", _deal_rep(t, i))),
    "company_history": (
        "annual_revenue",
        lambda t, i: _newest_version(t, "company_history", "company_id", "annual_revenue", _deal_company(t, i)),
    ),
    "user_history": (
        "region",
        lambda t, i: _newest_version(t, "user_history", "user_id", "region", _deal_rep(t, i)),
    ),
}


@pytest.mark.parametrize("table", list(PLANTED))
def test_a_feature_reading_a_tables_future_is_caught_by_name(table, tiny_crm, deal_rows):
    feature, leaky_value = PLANTED[table]

    def leaky_builder(tables: CRMTables, index: pd.DataFrame) -> pd.DataFrame:
        features = compute_deal_features(tables, index)
        features[feature] = leaky_value(tables, features)
        return features

    tables = tiny_crm.tables
    snapshot = leaky_builder(tables, deal_rows)  # the leak, as a dataset build would compute it
    with pytest.raises(LeakageError) as caught:
        recompute_audit(tables, snapshot, leaky_builder, "opportunity_id", DEAL_WIN_FEATURES.names, **SAMPLE)
    # Named, and alone: the features the leak did not touch recompute equal (no false alarm elsewhere).
    assert re.findall(r"'(\w+)': \d+ of \d+ rows", str(caught.value)) == [feature]


def test_a_lead_reading_its_final_status_is_caught(tiny_crm, dates):
    """The leads table is rewritten in place too: a feature reading today's status is caught."""
    builder = LeadConversionBuilder()

    def leaky(tables: CRMTables, index: pd.DataFrame) -> pd.DataFrame:
        features = builder.features(tables, index)
        features["source"] = _current(tables, "leads", "status", features["lead_id"])
        return features

    rows = sample_rows(builder.snapshots(tiny_crm.tables, dates, 90), SAMPLE["rows"], SAMPLE["max_dates"], 0)
    snapshot = leaky(tiny_crm.tables, rows[["lead_id", "as_of"]])
    with pytest.raises(LeakageError, match="'source'"):
        recompute_audit(tiny_crm.tables, snapshot, leaky, "lead_id", builder.feature_spec.names, **SAMPLE)


def test_the_check_needs_the_snapshot_columns(tiny_crm, deal_rows):
    with pytest.raises(KeyError, match="value"):
        recompute_audit(tiny_crm.tables, deal_rows, compute_deal_features, "opportunity_id", DEAL_WIN_FEATURES.names)
