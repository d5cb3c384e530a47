"""TensorRT path: the published graph splits exactly at the FeatureSpec seam, the GPU-host Triton ensemble is
generated and validated by Triton's own schema, and (on a GPU host with TensorRT) the engine matches
onnxruntime. The engine build itself needs `tensorrt` + a CUDA GPU and is skipped elsewhere with the reason."""

import dataclasses
import shutil

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from fulqrun_ml.export.onnx_export import raw_feeds
from fulqrun_ml.export.tensorrt import (
    PLAN_FILE,
    SEAM,
    export_tensorrt,
    tensorrt_unavailable_reason,
    write_split,
)
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.serving.deploy import tensorrt_ensemble_configs
from fulqrun_ml.serving.repository import TritonRepositoryBuilder

TENSORRT_MISSING = tensorrt_unavailable_reason()


def _holdout_feeds(version, trained_run) -> dict[str, np.ndarray]:
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    holdout = pd.read_parquet(f"{trained_run['run_dir']}/holdout.parquet").head(500)
    return raw_feeds(spec, holdout)


def test_split_halves_chained_equal_the_whole_graph(published, trained_run, tmp_path):
    version, _ = published
    preprocess_path, network_path = write_split(version.path / "model.onnx", tmp_path)
    feeds = _holdout_feeds(version, trained_run)
    encoded = ort.InferenceSession(str(preprocess_path)).run(list(SEAM), feeds)
    chained = ort.InferenceSession(str(network_path)).run(None, dict(zip(SEAM, encoded, strict=True)))[0]
    whole = ort.InferenceSession(str(version.path / "model.onnx")).run(None, feeds)[0]
    np.testing.assert_array_equal(chained, whole)
    assert encoded[0].dtype == np.float32 and encoded[1].dtype == np.int64


def test_ensemble_configs_need_a_tensorrt_export(published):
    version, _ = published
    with pytest.raises(FileNotFoundError, match="--tensorrt"):
        tensorrt_ensemble_configs(version)


def test_tensorrt_ensemble_repository_layout(published, tmp_path):
    """Layout and Triton schema of the three-model ensemble. The engine file here holds placeholder bytes
    (no server loads it in this test); the real engine is built by the GPU-only test below."""
    source, _ = published
    copy = tmp_path / "version"
    shutil.copytree(source.path, copy)
    write_split(copy / "model.onnx", copy)
    (copy / PLAN_FILE).write_bytes(b"placeholder: layout test only")
    version = dataclasses.replace(source, path=copy)
    repo = tmp_path / "repo"
    configs = tensorrt_ensemble_configs(version, max_batch_size=512, preferred_batch_sizes=(64,))
    for config in configs:
        TritonRepositoryBuilder(repo).add(version, config)
    parsed = {
        c.name: text_format.Parse((repo / c.name / "config.pbtxt").read_text(), pb.ModelConfig()) for c in configs
    }
    pre, net, ensemble = (parsed[f"deal_win{s}"] for s in ("_preprocess", "_net", ""))
    assert pre.platform == "onnxruntime_onnx" and pre.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert net.platform == "tensorrt_plan" and net.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert ensemble.platform == "ensemble" and not ensemble.instance_group
    n_inputs = len(version.metadata["inputs"])
    widths = [d for t in net.input for d in t.dims]
    assert sum(widths) == n_inputs and [t.name for t in net.input] == list(SEAM)
    assert [t.name for t in ensemble.input] == [i["name"] for i in version.metadata["inputs"]]
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["deal_win_preprocess", "deal_win_net"]
    assert dict(steps[1].output_map) == {"probability": "probability"}
    v = str(version.version)
    assert sorted(p.name for p in (repo / "deal_win_preprocess" / v).iterdir()) == ["model.onnx"]
    assert sorted(p.name for p in (repo / "deal_win_net" / v).iterdir()) == ["model.plan"]
    assert list((repo / "deal_win" / v).iterdir()) == []
    assert all(p.max_batch_size == 512 for p in parsed.values())


@pytest.mark.gpu
@pytest.mark.skipif(TENSORRT_MISSING is not None, reason=f"TensorRT engine build: {TENSORRT_MISSING}")
def test_tensorrt_engine_matches_onnxruntime(published, trained_run, tmp_path):
    version, _ = published
    staging = tmp_path / "staging"
    shutil.copytree(version.path, staging)
    report = export_tensorrt(staging, _holdout_feeds(version, trained_run))
    assert (staging / PLAN_FILE).stat().st_size > 0
    assert report["max_abs_diff_vs_onnxruntime"] <= 2e-2 and report["rows_checked"] > 0


@pytest.mark.skipif(TENSORRT_MISSING is None, reason="TensorRT is available here: the engine is built instead")
def test_export_tensorrt_without_tensorrt_publishes_nothing(trained_run, tmp_path):
    from fulqrun_ml.export.package import export_run
    from fulqrun_ml.export.tensorrt import TensorRTUnavailableError

    with pytest.raises(TensorRTUnavailableError, match="tensorrt"):
        export_run(trained_run["run_dir"], tmp_path, "deal_win", tensorrt=True)
    assert not (tmp_path / "deal_win").exists()
