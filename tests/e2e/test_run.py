"""`fulqrun-ml run` end to end on tiny data: simulate -> train -> export -> Triton -> report."""

import json

import pytest

from fulqrun_ml.pipelines.end_to_end import run_end_to_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_run_writes_the_promised_report(tmp_path):
    report = run_end_to_end(
        [
            f"paths.root_dir={tmp_path}",
            "data.source.n_opportunities=1500",
            "data.source.n_companies=300",
            "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false",
        ],
        n_requests=50,
    )
    saved = json.loads((tmp_path / "reports" / "run.json").read_text())
    assert saved["metrics"]["model"]["auc"] == report["metrics"]["model"]["auc"]
    for who in ("model", "rep", "oracle"):
        assert 0.5 < saved["metrics"][who]["auc"] <= 1.0
    assert 0 <= saved["metrics"]["model"]["ece"] <= 1
    assert saved["parity_max_abs_diff"] <= 1e-5
    assert saved["served_vs_onnxruntime_max_abs_diff"] <= 1e-6
    serving = saved["serving"]
    assert serving["n_requests"] == 50 and 0 < serving["p50_ms"] <= serving["p99_ms"]
    assert serving["bad_field_error"].startswith("field 'value'")
    assert serving["healthy_after_bad_request"] is True
    assert len(saved["predictions"]) == 5
    assert all(0 < p["model_probability"] < 1 for p in saved["predictions"])
    assert (tmp_path / "models" / "deal_win" / "1" / "model.onnx").is_file()
    assert (tmp_path / "models" / "triton_repo" / "deal_win" / "config.pbtxt").is_file()
    assert (tmp_path / "models" / "triton_repo_gpu" / "deal_win" / "config.pbtxt").is_file()
    assert list((tmp_path / "logs" / "deal_win" / "runs").glob("*/run_info.json"))
