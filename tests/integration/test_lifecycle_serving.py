"""The lifecycle-stage model (multiclass, [N, K] class probabilities) served by a real Triton.

Trained on tiny data (one epoch), published by the real exporter (parity-checked), the repository written by the
`fulqrun-ml serve` path (`serving.deploy.build_repositories`): one request of raw CRM rows comes back as an
[N, K] probability matrix equal to onnxruntime on the published graph, each row summing to one, the class order
in the version's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from fulqrun_ml.export.multiclass_export import CLASS_PROBABILITY
from fulqrun_ml.export.onnx_export import raw_feeds
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.project import compose_config
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import record_columns
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

pytestmark = pytest.mark.integration
NAME = "lifecycle_stage"


@pytest.fixture(scope="module")
def served(compose_train, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle_serving")
    cfg = compose_train(
        root / "run",
        "task=lifecycle_stage",
        "model=mlp",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"paths.root_dir={root}",
    )
    run_dir = Path(train(cfg)["run_dir"])
    models = root / "models"
    version, parity = export_run(run_dir, models, NAME)
    assert parity < 1e-4
    serve_cfg = compose_config("serve", ["serving.max_batch_size=32", f"paths.models_dir={models}"])
    repo, names = build_repositories(version, serve_cfg.serving, models)
    assert NAME in names
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = pd.read_parquet(run_dir / "holdout.parquet")[spec.spec.names].head(5)
    with TritonServer(repo) as server:
        yield server, version, spec, rows


def test_one_request_returns_the_class_probability_matrix_of_the_graph(served):
    server, version, spec, rows = served
    session = ort.InferenceSession(str(version.path / "model.onnx"), providers=["CPUExecutionProvider"])
    (local,) = session.run([CLASS_PROBABILITY], raw_feeds(spec, rows))
    classes = json.loads((version.path / "metadata.json").read_text())["classes"]
    assert local.shape == (len(rows), len(classes)) == (5, 5)
    with TritonPredictionClient(server.http_url, NAME) as client:
        answer = client.infer(record_columns(rows))
    served_probabilities = answer[CLASS_PROBABILITY].reshape(len(rows), -1)
    assert served_probabilities.shape == local.shape
    np.testing.assert_allclose(served_probabilities, local, atol=1e-6)
    np.testing.assert_allclose(served_probabilities.sum(axis=1), 1.0, atol=1e-5)
