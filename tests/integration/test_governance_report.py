"""Fairness and the compliance report on a real trained and published model (the session's `published` fixture):
fairness.json and its summary in the version, the gate and its override on `models promote`, and
`fulqrun-ml governance report` before and after traffic is logged through the prediction log's real store."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from fulqrun_ml.monitoring.governance import main as governance_main
from fulqrun_ml.monitoring.prediction_store import ParquetStore
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.commands import models_main
from fulqrun_ml.registry.fairness_gate import FAIRNESS_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ATTRIBUTES = {"region", "industry", "company_size", "rep_tenure"}


@pytest.fixture
def registry(published, tmp_path):
    """A private copy of the published model, so promotions here do not touch the shared session registry."""
    version, _ = published
    models = tmp_path / "models"
    shutil.copytree(version.path.parent, models / "deal_win")
    return models, version


def test_a_published_binary_version_carries_fairness_by_group(published):
    version, _ = published
    report = json.loads((version.path / FAIRNESS_FILE).read_text())
    assert set(report["attributes"]) == ATTRIBUTES and report["missing_attributes"] == {}
    assert sum(g["n"] for g in report["attributes"]["region"]["groups"].values()) == report["n"]
    assert version.metadata["fairness"]["gaps"] == report["summary"]["gaps"]
    mitigation = report["mitigation"]
    assert mitigation["method"] == "threshold_optimizer" and mitigation["fitted_on"] == "val"
    assert "cost" in mitigation or "skipped" in mitigation
    card = (version.path / "MODEL_CARD.md").read_text()
    fairness = card.split("## Fairness")[1].split("\n## ")[0]
    assert "| region |" in fairness and "**company_size**" in fairness and "**rep_tenure**" in fairness


def log_traffic(store_dir, version, holdout: pd.DataFrame, when: datetime, shift: float = 1.0) -> None:
    """Holdout rows stored as the prediction log's shipper stores served predictions (one record per row)."""
    inputs = [i["name"] for i in version.metadata["inputs"]]
    rows = holdout.assign(value=holdout["value"] * shift)[inputs].to_dict("records")
    records = [
        {"model": "deal_win", "request_id": f"req-{i}", "row": 0, "version": version.version, "time": when,
         "entity_id": None, "latency_ms": 1.0, "inputs": row, "outputs": {"probability": 0.5}}
        for i, row in enumerate(rows)
    ]  # fmt: skip
    ParquetStore(store_dir).commit(records, {})


def test_the_gate_override_and_the_compliance_report_of_a_real_version(registry, tmp_path, capsys):
    models, version = registry
    strict = tmp_path / "strict.yaml"
    strict.write_text("gate:\n  max_gaps:\n    tpr: 0.0\n    fpr: 0.0\n")
    promote = ["--models-dir", str(models), "promote", "deal_win"]
    assert models_main([*promote, str(version.version), "--alias", "candidate"]) == 0
    assert models_main([*promote, "candidate", "--governance-config", str(strict)]) == 2
    assert "fairness gate" in capsys.readouterr().err
    reason = "accepted for the pilot region; reviewed 2026-12-04"
    flags = ["--governance-config", str(strict), "--override-fairness", "--reason", reason, "--actor", "auditor"]
    assert models_main([*promote, "candidate", *flags]) == 0
    assert read_audit(models, "deal_win")[-1]["reason"] == reason

    out, store = tmp_path / "report", tmp_path / "store"
    argv = ["report", "deal_win", str(version.version), "--models-dir", str(models), "--out", str(out)]
    argv += ["--prediction-store", str(store), "--governance-config", str(strict)]
    assert governance_main(argv) == 0
    stem = out / f"deal_win_v{version.version}"
    markdown = stem.with_suffix(".md").read_text()
    for heading in ("Lineage and data hash", "Metrics and calibration", "Fairness", "Drift since deployment",
                    "PII scan of the artifacts", "Audit trail"):  # fmt: skip
        assert f"## {heading}" in markdown
    assert version.metadata["data_hash"] in markdown
    assert "No traffic logged yet" in markdown
    assert "| auditor | promote ← | production |" in markdown and reason in markdown
    assert "fairness gate | FAIL" in markdown  # the strict config's verdict, next to the override that let it pass
    html = stem.with_suffix(".html").read_text()
    assert html.startswith("<!doctype html>") and "<table>" in html and "<h2>Audit trail</h2>" in html
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["pii_scan"]["clean"], data["pii_scan"]  # a published version holds no emails or phone numbers
    assert data["pii_scan"]["files_scanned"] >= 5 and "net_state.pt" in data["pii_scan"]["skipped"]
    assert data["drift"]["status"] == "no traffic logged yet"

    lineage = json.loads((version.path / "lineage.json").read_text())
    holdout = pd.read_parquet(f"{lineage['run_dir']}/holdout.parquet")
    log_traffic(store, version, holdout.head(300), datetime.now(UTC) + timedelta(seconds=1), shift=4.0)
    assert governance_main(argv) == 0
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["drift"]["rows_logged"] == 300
    assert "value" in data["drift"]["drift"]["features_drifted"]  # values x4: drift found against the holdout
    assert "300 predictions logged" in stem.with_suffix(".md").read_text()
