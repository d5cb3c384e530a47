"""Behavioural lead scoring through a real Triton: `task=lead_conversion_sequence` trained on the lead intent story,
exported with parity, written into a repository by the serve path and answered by the SDK exactly as onnxruntime
answers the same lead features and lead-behaviour sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.project import compose_config
from fulqrun_ml.sequence.export import export_sequence_run, fusion_probabilities
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

pytestmark = pytest.mark.integration
TOL = 1e-5
LEAD_RUN = [
    "experiment=deal_win_sequence_fusion",
    "task=lead_conversion_sequence",
    "+data.source.lead_events=true",
    "data.source.n_opportunities=700",
    "data.snapshot_every_days=28",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "task.sequence.max_len=12",
    "task.sequence.ablation=false",
    "model.net.d_model=16",
    "model.net.n_layers=1",
]


def test_lead_scores_served_equal_onnxruntime(tmp_path):
    models = tmp_path / "models"
    result = train(compose_config("train", [*LEAD_RUN, f"paths.output_dir={tmp_path / 'run'}"]))
    run = Path(result["run_dir"])
    version, parity = export_sequence_run(run, models, "lead_conversion_sequence")
    assert parity <= TOL
    cfg = compose_config("serve", ["serving.max_batch_size=8", f"paths.models_dir={models}"])
    repo, names = build_repositories(version, cfg.serving, models)
    assert names == ["lead_conversion_sequence"]
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    frame = pd.read_parquet(run / "holdout.parquet")[list(spec.spec.names)].head(20)  # the raw feature columns
    with np.load(run / "holdout_sequences.npz") as stored:
        sequences = {k: stored[k][:20] for k in stored.files}
    expected = fusion_probabilities(version.path / "model.onnx", spec, frame, sequences)
    with TritonServer(repo) as server, TritonPredictionClient(server.http_url, "lead_conversion_sequence") as client:
        got = client.predict(frame, sequences=sequences)  # 20 rows > max batch 8: chunked
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert len(set(np.round(expected, 6))) > 1  # the leads get different scores
