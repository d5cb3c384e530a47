"""`fulqrun-ml monitor drift|performance|alerts|automations` on real files, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fulqrun_ml.monitoring.commands import PLUGIN_SUBCOMMANDS, SUBCOMMANDS, build_parser, load_monitoring_config, main
from fulqrun_ml.monitoring.drift import DriftThresholds, MonitoringInputError
from fulqrun_ml.monitoring.drift_check import synthetic_window
from fulqrun_ml.registry.audit import AUDIT_FILE


@pytest.fixture
def traffic(tmp_path: Path) -> dict[str, Path]:
    """A reference, two weeks of logged predictions (the second with a changed industry mix) and outcomes."""
    rng = np.random.default_rng(5)
    reference = synthetic_window(3000, rng)
    weeks = []
    for week, shift in enumerate((None, "industry_mix_10pt")):
        rows = synthetic_window(400, rng, shift)
        rows["predicted_at"] = pd.Timestamp("2026-11-02", tz="UTC") + pd.Timedelta(days=7 * week)
        weeks.append(rows)
    current = pd.concat(weeks, ignore_index=True)
    current["entity_id"] = [f"D{i}" for i in range(len(current))]
    current["request_id"] = [f"R{i}" for i in range(len(current))]
    outcomes = current[["entity_id"]].assign(
        closed_at=current["predicted_at"] + pd.Timedelta(days=40), won=rng.random(len(current)) < current["probability"]
    )
    paths = {"reference": tmp_path / "reference.parquet", "current": tmp_path / "current.parquet",
             "outcomes": tmp_path / "outcomes.csv", "spec": tmp_path / "feature_spec.json"}  # fmt: skip
    reference.to_parquet(paths["reference"])
    current.to_parquet(paths["current"])
    outcomes.to_csv(paths["outcomes"], index=False)
    spec = FeatureSpec((NumericFeature("value", "v", log1p=True), NumericFeature("score", "s")),
                       (CategoricalFeature("industry", "i"),))  # fmt: skip
    spec.fit(reference).save(paths["spec"])
    return paths


def test_drift_command_writes_windows_with_spec_features(traffic: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "drift.json"
    argv = ["drift", "--reference", str(traffic["reference"]), "--current", str(traffic["current"])]
    assert main([*argv, "--spec", str(traffic["spec"]), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["features"] == {
        "numeric": ["value", "score"],
        "categorical": ["industry"],
        "prediction": "probability",
    }
    assert [w["drifted_features"] for w in result["drift"]["windows"]] == [[], ["industry"]]
    assert [w["issues"] for w in result["quality"]["windows"]] == [{}, {}]
    # without a spec the features are inferred from the reference's dtypes (ids and times excluded)
    assert main([*argv, "--out", str(out)]) == 0
    inferred = json.loads(out.read_text())["features"]
    assert inferred["numeric"] == ["value", "activities", "score"] and inferred["categorical"] == ["industry", "region"]


def test_performance_then_alerts_with_an_audit_log(traffic: dict[str, Path], tmp_path: Path) -> None:
    perf, drift, alerts = tmp_path / "perf.json", tmp_path / "drift.json", tmp_path / "alerts.json"
    argv = ["performance", "--predictions", str(traffic["current"]), "--outcomes", str(traffic["outcomes"])]
    assert main([*argv, "--segment", "region", "--out", str(perf)]) == 0
    result = json.loads(perf.read_text())
    assert result["join"]["labelled"] == 800 and {w["segment"] for w in result["windows"]} == {
        "all",
        "na",
        "emea",
        "apac",
    }
    main(["drift", "--reference", str(traffic["reference"]), "--current", str(traffic["current"]), "--out", str(drift)])
    audit = tmp_path / "audit"
    assert main(["alerts", "--results", str(drift), str(perf), "--audit-dir", str(audit), "--out", str(alerts)]) == 0
    fired = json.loads(alerts.read_text())["fired"]
    assert [(a["rule"], a["at"]) for a in fired] == [("feature_drift", "2026-11-15")]
    assert len((audit / AUDIT_FILE).read_text().splitlines()) == 1
    main(["alerts", "--results", str(drift), "--audit-dir", str(audit), "--out", str(alerts)])  # rerun: deduped
    assert json.loads(alerts.read_text())["fired"] == []


def test_automations_command(traffic: dict[str, Path], tmp_path: Path) -> None:
    log = pd.DataFrame({"entity_id": ["D1", "D1"], "request_id": ["a", "b"],
                        "predicted_at": ["2026-11-02", "2026-11-03"], "probability": [0.8, 0.5]})  # fmt: skip
    log.to_csv(tmp_path / "log.csv", index=False)
    out = tmp_path / "events.json"
    main(["automations", "--predictions", str(tmp_path / "log.csv"), "--audit-dir", str(tmp_path), "--out", str(out)])
    assert [e["rule"] for e in json.loads(out.read_text())["events"]] == ["deal_probability_drop"]


def test_errors_name_the_option_or_column(traffic: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MonitoringInputError, match="--current"):
        main(["drift", "--reference", str(traffic["reference"]), "--current", str(tmp_path / "nope.parquet")])
    pd.read_parquet(traffic["current"]).drop(columns=["score"]).to_parquet(tmp_path / "no_score.parquet")
    with pytest.raises(MonitoringInputError, match="'score'"):
        main(["drift", "--reference", str(traffic["reference"]), "--current", str(tmp_path / "no_score.parquet"),
              "--spec", str(traffic["spec"])])  # fmt: skip
    (tmp_path / "bad.json").write_text('{"drift": {"windows": [{"n_current": 3}]}}')
    with pytest.raises(MonitoringInputError, match="--results"):
        main(["alerts", "--results", str(tmp_path / "bad.json"), "--audit-dir", str(tmp_path)])
    with pytest.raises(MonitoringInputError, match="--config"):
        load_monitoring_config("no_such_config")


def test_default_config_parses_and_subcommands_are_a_registry() -> None:
    config = load_monitoring_config("default")
    assert DriftThresholds.from_config(config["drift"]).alpha == 0.001
    assert {"drift", "performance", "alerts", "automations", "drift-check"} <= set(SUBCOMMANDS)
    assert build_parser().parse_args(["drift", "--reference", "a", "--current", "b"]).command == "drift"
    assert PLUGIN_SUBCOMMANDS["simulate"][0] == "fulqrun_ml.monitoring.simulate"  # `monitor simulate` passes through
