"""The customer lifecycle story, its tables, features, multiclass task and CSAT regression.

Each guarantee here was broken once on purpose while writing it (noted per test) to see the test fail.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.lifecycle_snapshots import lifecycle_stage_snapshots, true_next_stage
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_lifecycle import BASE_LOGITS, STAGES, expected_csat, transition_probabilities
from fulqrun_ml.data.snapshots import snapshot_dates
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.data.validation import CRMValidationError, validate_crm
from fulqrun_ml.errors import DataContractError
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.features.lifecycle_features import LIFECYCLE_FEATURES, compute_lifecycle_features
from fulqrun_ml.features.recompute_audit import recompute_audit
from fulqrun_ml.tasks.multiclass_metrics import multiclass_report

SMALL = {"n_opportunities": 1500, "n_companies": 300, "n_reps": 10, "seed": 5}


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(**SMALL, lifecycle=True)


def test_transition_rows_are_distributions_without_impossible_moves() -> None:
    rng = np.random.default_rng(0)
    stage = rng.integers(0, 4, size=500)
    size = rng.choice(["smb", "mid_market", "enterprise"], size=500)
    p = transition_probabilities(stage, rng.normal(size=500), rng.uniform(0, 2, size=500), size)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.all(p[~np.isfinite(BASE_LOGITS[stage])] == 0.0)  # broke: drivers added to -inf cells -> nan
    more_usage = transition_probabilities(stage, np.full(500, 2.0), np.ones(500), size)
    less_usage = transition_probabilities(stage, np.full(500, -2.0), np.ones(500), size)
    at_risk = STAGES.index("at_risk")
    assert np.all(more_usage[stage < 3, at_risk] < less_usage[stage < 3, at_risk])  # usage protects


def test_drawn_moves_follow_the_true_probabilities(crm) -> None:
    """Per from-stage, the drawn next stage's frequencies equal the mean true probabilities (binomial noise)."""
    moves = crm.lifecycle_truth.transitions
    for stage, group in moves.groupby("from_stage"):
        for to in STAGES:
            expected = group[f"p_{to}"].mean()
            observed = (group["to_stage"] == to).mean()
            assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / len(group)) + 1e-9, (stage, to)


def test_expected_csat_is_the_mean_of_the_drawn_scores() -> None:
    rng = np.random.default_rng(1)
    for mu in (1.2, 2.6, 4.0, 4.8):
        draws = np.clip(np.round(mu + rng.normal(0, 0.8, size=200_000)), 1, 5)
        assert abs(draws.mean() - expected_csat(np.array([mu]))[0]) < 0.01


def test_default_outputs_unchanged_and_lifecycle_tables_optional(crm) -> None:
    """The story draws from its own generators: every existing table is identical with and without it."""
    plain = simulate_crm(**SMALL)
    assert plain.tables.account_states.empty and plain.tables.surveys.empty and plain.lifecycle_truth is None
    for name, frame in {**plain.tables.frames(), **plain.tables.history_frames()}.items():
        pd.testing.assert_frame_equal(frame, crm.tables.table(name) if name in plain.tables.frames() else
                                      crm.tables.history(name), obj=name)  # fmt: skip
    for name in ("meddpicc_events", "notes"):
        pd.testing.assert_frame_equal(getattr(plain.tables, name), getattr(crm.tables, name), obj=name)
    pd.testing.assert_frame_equal(plain.latent, crm.latent)
    assert len(crm.tables.account_states) > 300 and len(crm.tables.surveys) > 100


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_lifecycle_tables_round_trip_through_exports(crm, tmp_path: Path, fmt: str) -> None:
    write_crm_directory(crm.tables, tmp_path / fmt, format=fmt)
    loaded = DirectorySource(tmp_path / fmt, format=fmt).load()
    for name, time in (("account_states", "changed_at"), ("surveys", "responded_at")):
        got, want = getattr(loaded, name), getattr(crm.tables, name)
        assert len(got) == len(want) > 0
        as_us = [
            pd.to_datetime(t, utc=True).dt.floor("us").astype("datetime64[us, UTC]") for t in (got[time], want[time])
        ]
        assert (as_us[0].to_numpy() == as_us[1].to_numpy()).all()
        assert (got["company_id"].to_numpy() == want["company_id"].to_numpy()).all()
    assert (pd.to_numeric(loaded.surveys["score"]).to_numpy() == crm.tables.surveys["score"].to_numpy()).all()


def test_an_export_without_the_tables_still_loads_but_the_task_says_what_is_missing(tmp_path: Path) -> None:
    plain = simulate_crm(**SMALL)
    write_crm_directory(plain.tables, tmp_path, format="parquet")
    loaded = DirectorySource(tmp_path, format="parquet").load()
    assert loaded.account_states.empty
    with pytest.raises(DataContractError, match="account_states"):
        lifecycle_stage_snapshots(loaded, [loaded.extracted_at - pd.Timedelta(days=60)], 30)


def test_bad_survey_score_is_named(crm) -> None:
    surveys = crm.tables.surveys.copy()
    surveys["score"] = surveys["score"].astype(object)
    surveys.loc[3, "score"] = 9
    with pytest.raises(CRMValidationError) as caught:
        validate_crm(dataclasses.replace(crm.tables, surveys=surveys))
    problems = [p for p in caught.value.report.problems if p.table == "surveys"]
    assert [(p.field, p.row) for p in problems] == [("score", 3)]


def test_lifecycle_features_are_point_in_time(crm) -> None:
    tables = crm.tables
    dates = snapshot_dates(tables, 60, 90, 30)
    index = lifecycle_stage_snapshots(tables, dates, 30)[["company_id", "as_of"]]
    features = compute_lifecycle_features(tables, index)
    recompute_audit(tables, features, compute_lifecycle_features, "company_id", LIFECYCLE_FEATURES.names)

    def peeks_ahead(t, idx):  # reads the stage recorded a month after as_of: a leak the audit must catch
        later = compute_lifecycle_features(t, idx.assign(as_of=idx["as_of"] + pd.Timedelta(days=30)))
        return later.assign(as_of=idx["as_of"].to_numpy())

    leaky = peeks_ahead(tables, index)
    with pytest.raises(LeakageError, match=r"lifecycle_stage|days_in_stage|csat"):
        recompute_audit(tables, leaky, peeks_ahead, "company_id", LIFECYCLE_FEATURES.names)


def test_oracle_is_the_transition_of_the_next_tick(crm) -> None:
    tables = crm.tables
    frame = lifecycle_stage_snapshots(tables, snapshot_dates(tables, 14, 60, 30), 30)
    truth = true_next_stage(crm.lifecycle_truth.transitions, frame, 30)
    assert not np.isnan(truth).any()
    assert np.allclose(truth.sum(axis=1), 1.0)
    # The oracle's from-stage is the stage recorded at as_of (broke: matching the tick at or before as_of).
    stay = truth[np.arange(len(frame)), frame["stage_now"].map(STAGES.index).to_numpy()]
    assert (stay > 0).all()
    assert true_next_stage(crm.lifecycle_truth.transitions, frame, 60) is None


def test_multiclass_report_scores_known_cases() -> None:
    classes = ("a", "b", "c")
    labels = np.array([0, 1, 2, 0])
    perfect = np.eye(3)[labels]
    report = multiclass_report(perfect, labels, classes)
    assert report["macro_f1"] == 1.0 and report["log_loss"] < 1e-9 and report["classwise_ece"] == 0.0
    uniform = multiclass_report(np.full((4, 3), 1 / 3), labels, classes)
    assert abs(uniform["log_loss"] - np.log(3)) < 1e-12
    assert uniform["ece_by_class"]["a"] == pytest.approx(abs(1 / 3 - 0.5))
