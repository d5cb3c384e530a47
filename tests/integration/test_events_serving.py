"""task=events end to end on a small fixture: `train` (the real spine, all three arms and LightGBM), export with
parity, the repository `fulqrun-ml serve` builds, a real Triton (python-tensor backend), the SDK and
`predict --events`, which must answer exactly what onnxruntime gives on the same inputs.

One tiny run (1 epoch, 120 customers, small encoder) keeps the module near half a minute on an idle machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from fulqrun_ml.cli import main as cli_main
from fulqrun_ml.data.event_fixture import write_event_fixture
from fulqrun_ml.data.event_table import EventTableError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import compose_config
from fulqrun_ml.sequence.event_export import event_outputs
from fulqrun_ml.sequence.event_inputs import event_model_inputs
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.event_predict import predict_events
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

pytestmark = pytest.mark.integration
TOL = 1e-5


def train_overrides(events: Path, labels: Path, out: Path, models: Path) -> list[str]:
    return [
        "task=events",
        "model=event_fusion",
        f"data.events_path={events}",
        f"data.labels_path={labels}",
        "data.entity_col=customer_id",
        "data.time_col=ts",
        "data.target=churned",
        "data.as_of_col=as_of",
        "data.max_len=16",
        "data.embargo_days=60",
        "model.net.d_model=8",
        "model.net.n_heads=2",
        "model.net.n_layers=1",
        "model.net.hidden_dims=[16]",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"paths.output_dir={out}",
        f"paths.models_dir={models}",
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    events, labels = write_event_fixture(root / "data", n_customers=120, seed=2)
    models = root / "models"
    result = train(compose_config("train", train_overrides(events, labels, root / "run", models)))
    run = Path(result["run_dir"])
    version, parity = load_pipeline(run).export(run, models, "events")
    cfg = compose_config("serve", ["serving.max_batch_size=16", f"paths.models_dir={models}"])
    repo, names = build_repositories(version, cfg.serving, models)
    assert names == ["events"]
    queries = root / "data" / "queries.csv"
    pd.read_csv(labels).drop(columns=["churned", "spend_next"]).tail(40).to_csv(queries, index=False)
    with TritonServer(repo) as server:
        yield {
            "server": server,
            "version": version,
            "parity": parity,
            "result": result,
            "run": run,
            "events": events,
            "queries": queries,
        }


def test_train_writes_every_arm_next_to_lightgbm_on_the_same_rows(served):
    metrics = served["result"]["metrics"]
    for who in ("model", "aggregates_only", "sequence_only", "lightgbm"):
        assert metrics[who]["n"] == metrics["model"]["n"] > 0 and 0.0 <= metrics[who]["auc"] <= 1.0
    assert metrics["model_minus_lightgbm"]["auc"] == pytest.approx(metrics["model"]["auc"] - metrics["lightgbm"]["auc"])
    extra = served["result"]["extra"]
    assert extra["split"] == "time" and extra["leakage_audit"]["event_histories"]["violations"] == 0
    assert json.loads((served["run"] / "column_types.json").read_text())["timestamps"] == ["delivered_at"]
    assert served["parity"] < TOL


def test_sdk_answers_equal_onnxruntime_and_predict_events_reads_the_files(served):
    version = served["version"]
    inputs = event_model_inputs(version.path, served["events"], served["queries"])
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    expected = event_outputs((version.path / "model.onnx").read_bytes(), spec, inputs.records, inputs.sequences)
    with TritonPredictionClient(served["server"].http_url, "events") as client:
        got = client.predict(inputs.records, sequences=inputs.sequences)  # 40 rows > max batch 16: chunked
    np.testing.assert_allclose(got, expected, atol=TOL)
    lines = [json.loads(line) for line in predict_events(version.path, served["events"], served["queries"],
                                                         served["server"].http_url, "events")]  # fmt: skip
    assert [line["entity"] for line in lines] == inputs.queries["entity"].tolist()
    np.testing.assert_allclose([line["probability"] for line in lines], expected, atol=1e-5)
    output = served["events"].parent / "predictions.parquet"  # `predict --events ... --output F` writes a file
    argv = ["predict", "--events", str(served["events"]), "--queries", str(served["queries"]), "--output", str(output)]
    assert (
        cli_main([*argv, "--model-dir", str(version.path), "--url", served["server"].http_url, "--model", "events"])
        == 0
    )
    written = pd.read_parquet(output)
    assert written["entity"].tolist() == inputs.queries["entity"].tolist()
    np.testing.assert_allclose(written["probability"], expected, atol=1e-5)


def test_bad_requests_and_files_are_refused_by_name(served, tmp_path):
    version = served["version"]
    inputs = event_model_inputs(version.path, served["events"], served["queries"])
    arrays = {c: inputs.records[c].to_numpy().reshape(-1, 1)[:2] for c in inputs.records.columns}
    arrays = {c: a.astype(object) if a.dtype == object else a.astype(np.float32) for c, a in arrays.items()}
    arrays.update({k: v[:2] for k, v in inputs.sequences.items()})
    arrays["seq_category"] = np.full_like(arrays["seq_category"], 99)
    types = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(object): "BYTES"}
    request = []
    for name, array in arrays.items():
        tensor = httpclient.InferInput(name, list(array.shape), types[array.dtype])
        tensor.set_data_from_numpy(array)
        request.append(tensor)
    with pytest.raises(InferenceServerException, match=r"field 'seq_category': must be <= \d+ \(index range"):
        httpclient.InferenceServerClient(served["server"].http_url).infer("events", request)
    assert served["server"].is_ready()
    queries = tmp_path / "q.csv"
    pd.DataFrame({"customer_id": ["nobody"], "as_of": ["2024-06-01"]}).to_csv(queries, index=False)
    with pytest.raises(EventTableError, match=r"q.csv row 1: entity 'nobody' has no events"):
        event_model_inputs(version.path, served["events"], queries)
