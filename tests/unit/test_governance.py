"""The compliance report's own parts (monitoring/governance*.py) and the leaderboard's fairness columns, on small
real inputs: the PII scan counts without quoting, the deployment time from the audit log, atomic writes, escaped
HTML, errors naming the option, and the board's gaps on the same holdout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.benchmarks.leaderboard_binary import scores
from fulqrun_ml.benchmarks.leaderboard_fairness import render_fairness
from fulqrun_ml.benchmarks.leaderboard_kinds import Holdout
from fulqrun_ml.monitoring.governance import card_sections, main, render_html
from fulqrun_ml.monitoring.governance_sections import deployment_time, scan_artifacts
from fulqrun_ml.registry.aliases import promote
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.registry.store import publish_version


def test_the_pii_scan_counts_findings_per_file_without_quoting_them(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"note": "ok", "published_at": "2026-12-04T10:00:00"}))
    (tmp_path / "notes.md").write_text("Call ivan.silva@acme.com or +1 555 010 0199 today.\nsecond: a@b.io\n")
    (tmp_path / "net_state.pt").write_bytes(b"\x00\x01weights")
    pd.DataFrame({"who": ["x@y.org", "plain"]}).to_parquet(tmp_path / "rows.parquet")
    scan = scan_artifacts(tmp_path)
    assert scan["by_file"] == {"notes.md": {"email": 2, "phone": 1}, "rows.parquet": {"email": 1}}
    assert scan["findings"] == {"email": 3, "phone": 1} and not scan["clean"]
    assert scan["skipped"] == {"net_state.pt": "binary weights (numbers only)"}
    assert "ivan" not in json.dumps(scan) and "555" not in json.dumps(scan)
    (tmp_path / "notes.md").unlink()
    (tmp_path / "rows.parquet").unlink()
    assert scan_artifacts(tmp_path)["clean"]


def test_deployment_is_the_last_promotion_to_production_else_the_publication(tmp_path):
    for _ in range(2):
        publish_version(tmp_path, "m", lambda tmp: (tmp / "model.onnx").write_bytes(b"x"), {})
    audit = read_audit(tmp_path, "m")
    assert deployment_time(audit, 2) == (audit[1]["at"], "published (never promoted to production)")
    promote(tmp_path, "m", 2, alias="candidate")
    promote(tmp_path, "m", 2)
    audit = read_audit(tmp_path, "m")
    assert deployment_time(audit, 2) == (audit[-1]["at"], "promoted to production")
    assert deployment_time(audit, 7) == (None, "unknown")


def test_reports_are_replaced_atomically_and_html_escapes_markup(tmp_path):
    path = tmp_path / "r.md"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.md"]
    html = render_html("# T\n\n<script>alert(1)</script>\n\n| a |\n|---|\n| 1 |\n", "t")
    assert "<script>" not in html and "&lt;script&gt;" in html and "<table>" in html
    assert card_sections("# Card\n\n## Data\n\nrows\n\n## Lineage\n\nhash") == {"Data": "rows", "Lineage": "hash"}


def test_the_command_reports_errors_naming_what_is_wrong(tmp_path, capsys):
    assert main(["report", "nope", "1", "--models-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no published versions of model 'nope'" in capsys.readouterr().err
    publish_version(tmp_path, "m", lambda tmp: (tmp / "model.onnx").write_bytes(b"x"), {})
    argv = ["report", "m", "1", "--models-dir", str(tmp_path), "--drift-results", str(tmp_path / "absent.json")]
    assert main(argv) == 2
    assert "--drift-results" in capsys.readouterr().err


def test_a_version_without_fairness_or_traffic_still_gets_a_full_report(tmp_path):
    publish_version(tmp_path, "m", lambda tmp: (tmp / "model.onnx").write_bytes(b"x"), {"target_kind": "binary"})
    drift = tmp_path / "drift.json"
    drift.write_text(json.dumps({"drifted_features": ["value"]}))
    argv = ["report", "m", "latest", "--models-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*argv, "--prediction-store", str(tmp_path / "none"), "--drift-results", str(drift)]) == 0
    markdown = (tmp_path / "out" / "m_v1.md").read_text()
    assert "No traffic logged yet" in markdown and "no fairness results recorded" in markdown
    assert '"drifted_features"' in markdown  # the monitor's results file, included as given
    assert not (tmp_path / "none").exists()  # reading never creates a store


def test_leaderboard_rows_carry_fairness_gaps_and_the_section_renders_them():
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "label": (rng.random(n) < 0.5).astype(float),
            "region": rng.choice(["north", "south"], n),
            "industry": rng.choice(["software", "retail"], n),
            "company_size": "smb",
            "rep_tenure_days": rng.uniform(0, 900, n),
        }
    )
    probs = np.clip(frame["label"] * 0.3 + np.where(frame["region"] == "south", 0.55, 0.2), 0, 1).to_numpy()
    holdout = Holdout("binary", None, {"val": frame, "test": frame}, {}, "h", {}, {})
    row = scores(probs, probs, holdout)
    assert row["fairness"]["region"]["fpr"] == pytest.approx(1.0)  # south negatives score 0.55, north 0.2
    assert row["fairness"]["company_size"] == {"calibration": pytest.approx(abs(probs.mean() - frame.label.mean()))}
    section = {"task": "deal_win", "rows": [{"name": "mlp", "auc": 0.7, "fairness": row["fairness"]}]}
    lines = render_fairness(section)
    assert any(line.startswith("| model | region TPR gap") for line in lines)
    assert any(line.startswith("| mlp | ") and "1.000" in line for line in lines)
    assert lines[-1] == "" and "Fairness on the same holdout (deal_win)" in lines[1]
