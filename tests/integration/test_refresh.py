"""The daily refresh replayed over 5 simulated weeks: bootstrap, gated promotions, and a regression planted in
week 3 rolled back. Real training, export, registry and ONNX scoring; tiny data so it fits CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulqrun_ml.benchmarks.refresh_replay import NAME, replay
from fulqrun_ml.monitoring.refresh import RefreshGates, gate_reasons
from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.audit import read_audit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GATES = RefreshGates()


def test_gates_name_the_failing_metric():
    production = {"auc": 0.75, "ece": 0.03}
    assert gate_reasons({"auc": 0.748, "ece": 0.035}, production, GATES) == []
    assert "auc" in gate_reasons({"auc": 0.70, "ece": 0.03}, production, GATES)[0]
    assert "ece" in gate_reasons({"auc": 0.76, "ece": 0.09}, production, GATES)[0]


@pytest.fixture(scope="module")
def weeks(tmp_path_factory) -> tuple[Path, list[dict]]:
    work = tmp_path_factory.mktemp("refresh")
    rows = replay(work, weeks=5, opportunities=1000, start_days=600, bad_week=3, warm_epochs=1, first_epochs=3)
    return work, rows


def test_five_weeks_bootstrap_then_refresh(weeks):
    _, rows = weeks
    assert len(rows) == 6 and rows[0]["decision"] == "bootstrapped"
    for row in rows[1:]:
        assert row["holdout_rows"] > 0 and {"production", "candidate"} <= set(row["metrics"])
        assert row["warm_start"]


def test_every_promotion_passed_its_gates_and_every_rejection_kept_production(weeks):
    _, rows = weeks
    for row in rows[1:]:
        passed = not gate_reasons(row["metrics"]["candidate"], row["metrics"]["production"], GATES)
        if row["decision"].endswith("promoted"):
            assert passed and row["production_after"] == row["candidate"]
        else:
            assert row["production_after"] == row["production_before"] != row["candidate"]
            assert any(a["kind"] == "refresh_candidate_rejected" for a in row["alerts"])


def test_a_planted_bad_production_is_rolled_back_the_week_it_appears(weeks):
    work, rows = weeks
    bad_week = rows[3]
    planted = bad_week["planted_bad_version"]
    assert planted is not None
    assert bad_week["decision"].startswith("rolled_back")
    assert bad_week["production_after"] != planted
    assert bad_week["metrics"]["previous_production"]["auc"] - 0.02 > _auc_of_planted(bad_week)
    assert any(a["kind"] == "production_regressed" for a in bad_week["alerts"])
    # Later weeks may roll back again (small holdouts are noisy); the first rollback must be the planted model's.
    first_rollback = next(r for r in read_audit(work / "models", NAME) if r["action"] == "rollback")
    assert (first_rollback["actor"], first_rollback["from_version"]) == ("refresh-job", planted)
    assert read_alias_state(work / "models", NAME).production != planted


def _auc_of_planted(row: dict) -> float:
    reason = next(r for r in row["reasons"] if "rolled back" in r)
    return float(reason.split(" auc ")[1].split()[0])
