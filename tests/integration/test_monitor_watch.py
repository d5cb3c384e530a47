"""`fulqrun-ml monitor watch` end to end: a real Triton logs its answers to the spool, the watcher ships them,
compares them with the version's holdout, joins outcomes, fires alerts to a real HTTP receiver and serves
Prometheus metrics. Drifted traffic must alert; traffic drawn from the reference itself must not."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from fulqrun_ml.benchmarks.loadgen import kserve_json_body
from fulqrun_ml.monitoring import watch
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer
from tests.integration.test_monitoring_alerts import receiver  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATATYPES = {"float32": "FP32", "string": "BYTES"}
ROWS = 300  # above the drift rules' min_samples (200), in one weekly window


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_log(version, root: Path, frame: pd.DataFrame) -> Path:
    """Serve `version` with logging under root/log, send `frame` in requests of 25 rows with entity ids, stop."""
    config = config_for_version(version, max_batch_size=64, prediction_log={"spool_dir": root / "log" / "spool"})
    TritonRepositoryBuilder(root / "repo").add(version, config)
    inputs = [(i["name"], DATATYPES[i["dtype"]]) for i in version.metadata["inputs"]]
    with TritonServer(root / "repo") as server:
        for start in range(0, len(frame), 25):
            chunk = frame.iloc[start : start + 25]
            body = json.loads(kserve_json_body({c: chunk[c].to_numpy() for c, _ in inputs}, inputs))
            body["parameters"] = {"entity_id": ",".join(chunk["entity_id"])}
            reply = requests.post(f"http://{server.http_url}/v2/models/{version.name}/infer", json=body, timeout=30)
            assert reply.status_code == 200, reply.text
    serving = root / "serving.yaml"
    serving.write_text(yaml.safe_dump({"prediction_log": {"enabled": True, "dir": str(root / "log"), "dsn": None}}))
    return serving


def holdout_traffic(version, drifted: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    lineage = json.loads((version.path / "lineage.json").read_text())
    rows = pd.read_parquet(Path(lineage["run_dir"]) / "holdout.parquet").sample(ROWS, replace=True, random_state=1)
    rows = rows.reset_index(drop=True).assign(entity_id=[f"opp-{k}" for k in range(ROWS)])
    if drifted:  # a price rise and deals going quiet: two features far from the reference
        rows["value"] = rows["value"] * 3.0
        rows["days_since_last_activity"] = rows["days_since_last_activity"] + 60.0
    outcomes = pd.DataFrame(
        {
            "entity_id": rows["entity_id"],
            "closed_at": pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=30),
            "won": rows["label"].astype(int),
        }
    )
    return rows, outcomes


# The drifted run checks the whole ship/compare/alert/export path in `make test`; the no-false-alarm side is also
# checked fast by tests/unit/test_monitoring_drift.py, so the reference-like run is extended.
@pytest.mark.parametrize(
    "drifted", [True, pytest.param(False, marks=pytest.mark.extended)], ids=["drifted", "reference-like"]
)
def test_watch_ships_compares_alerts_and_exports_metrics(published, receiver, tmp_path, drifted):  # noqa: F811
    version, _ = published
    rows, outcomes = holdout_traffic(version, drifted)
    serving = serve_and_log(version, tmp_path, rows)
    outcomes.to_parquet(tmp_path / "outcomes.parquet")
    port, out, stop = free_port(), tmp_path / "watch.json", threading.Event()
    argv = [
        "--models-dir", str(version.path.parents[1]), "--version", "latest", "--serving-config", str(serving),
        "--outcomes", str(tmp_path / "outcomes.parquet"), "--metrics-port", str(port), "--interval", "3600",
        "--audit-dir", str(tmp_path / "audit"), "--webhook-url", receiver.url, "--out", str(out),
    ]  # fmt: skip
    thread = threading.Thread(target=watch.main, args=(argv, stop), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not out.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert out.is_file(), "the first cycle did not finish"
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop.set()
        thread.join(timeout=30)
    result = json.loads(out.read_text())
    assert result["shipped"]["records"] == ROWS and result["rows"] == ROWS
    (window,) = [w for w in result["drift"]["windows"] if w["segment"] == "all"]
    assert window["n_current"] == ROWS
    # The default config's new-deals cohort runs on the same traffic (deal models carry deal_age_days).
    assert result["cohorts_skipped"] == []
    assert {w["segment"] for w in result["drift"]["windows"]} <= {"all", "new_deals"}
    (perf,) = [w for w in result["performance"]["windows"] if w["segment"] == "all"]
    assert perf["n_labelled"] == ROWS and perf["realised"]["auc"] is not None
    fired = {a["rule"] for a in result["alerts"]["fired"]}
    drift_rules = {"feature_drift", "prediction_drift"}
    delivered = {body["rule"] for _, body in receiver.requests}
    if drifted:
        assert {"value", "days_since_last_activity"} <= set(window["drifted_features"])
        assert "feature_drift" in fired and "feature_drift" in delivered
        assert 'fulqrun_monitor_drift_detected{feature="value",model="deal_win"} 1.0' in metrics
    else:
        assert window["drifted_features"] == [] and not fired & drift_rules and not delivered & drift_rules
        assert 'fulqrun_monitor_drift_detected{feature="value",model="deal_win"} 0.0' in metrics
    assert 'fulqrun_monitor_performance{metric="auc",model="deal_win",segment="all"}' in metrics


def test_refresh_command_bootstraps_then_rejects_a_candidate_with_an_alert(tmp_path, receiver):  # noqa: F811
    """`monitor refresh` twice on tiny data: the first run bootstraps production; with a gate no candidate can
    pass (it must beat production by a whole AUC point), the second keeps production, leaves the warm-started
    version as `candidate`, and alerts through the webhook and the model's audit log."""
    from fulqrun_ml.monitoring import refresh_command
    from fulqrun_ml.registry.alias_state import read_alias_state
    from tests.conftest import FAST_TRAINER, TINY_DATA

    config = tmp_path / "refresh.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gates": {"max_auc_drop": -1.0, "min_holdout_rows": 50},
                "overrides": [*TINY_DATA, *FAST_TRAINER, "logger=none"],
                "warm_overrides": ["trainer.max_epochs=1"],
                "work_dir": str(tmp_path / "work"),
            }
        )
    )
    models = tmp_path / "models"
    argv = ["--task", "deal_win", "--models-dir", str(models), "--config", str(config)]
    argv += ["--webhook-url", receiver.url, "--out", str(tmp_path / "refresh.json")]
    assert refresh_command.main(argv) == 0
    assert json.loads((tmp_path / "refresh.json").read_text())["decision"] == "bootstrapped"
    assert refresh_command.main(argv) == 0
    second = json.loads((tmp_path / "refresh.json").read_text())
    assert second["decision"] == "kept" and second["warm_start"] == "init_from=deal_win@1"
    assert read_alias_state(models, "deal_win").production == 1
    assert read_alias_state(models, "deal_win").candidate == second["candidate"] == 2
    (alert,) = [body for _, body in receiver.requests if body["kind"] == "refresh_candidate_rejected"][:1]
    assert alert["candidate"] == 2 and "auc" in alert["reasons"][0]
    audit = [json.loads(line) for line in (models / "deal_win" / "audit.jsonl").read_text().splitlines()]
    assert [r["rule"] for r in audit if r["action"] == "alert"] == ["refresh_candidate_rejected"]
