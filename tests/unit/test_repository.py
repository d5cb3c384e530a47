"""Triton repository generation: typed config -> validated protobuf text, standard layout."""

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from fulqrun_ml.serving.repository import TensorSpec, TritonModelConfig, TritonRepositoryBuilder, config_for_version


def test_config_round_trips_through_tritons_own_schema():
    config = TritonModelConfig(
        name="m",
        inputs=(TensorSpec("value", "float32"), TensorSpec("stage", "string")),
        outputs=(TensorSpec("probability", "float32"),),
        max_batch_size=256,
        preferred_batch_sizes=(64, 512),
        parameters={"ort_intra_op_threads": "2"},
    )
    parsed = text_format.Parse(config.to_pbtxt(), pb.ModelConfig())
    assert parsed.backend == "python" and parsed.max_batch_size == 256
    assert [(i.name, i.data_type, list(i.dims)) for i in parsed.input] == [
        ("value", pb.TYPE_FP32, [1]),
        ("stage", pb.TYPE_STRING, [1]),
    ]
    assert list(parsed.dynamic_batching.preferred_batch_size) == [64]  # 512 > max_batch_size is dropped
    assert parsed.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert parsed.parameters["ort_intra_op_threads"].string_value == "2"


def test_unknown_variant_is_refused():
    config = TritonModelConfig(name="m", inputs=(), outputs=(), variant="tensorflow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown Triton variant"):
        config.to_proto()


@pytest.mark.parametrize("variant", ["python-ort", "onnxruntime"])
def test_repository_layout_for_each_variant(published, tmp_path, variant):
    version, _ = published
    model_dir = TritonRepositoryBuilder(tmp_path).add(version, config_for_version(version, variant))
    assert model_dir == tmp_path / "deal_win"
    parsed = text_format.Parse((model_dir / "config.pbtxt").read_text(), pb.ModelConfig())
    files = sorted(p.name for p in (model_dir / str(version.version)).iterdir())
    if variant == "python-ort":
        assert parsed.backend == "python" and files == ["feature_spec.json", "model.onnx", "model.py"]
    else:
        assert parsed.platform == "onnxruntime_onnx" and files == ["feature_spec.json", "model.onnx"]
        assert parsed.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert [i.name for i in parsed.input] == [i["name"] for i in version.metadata["inputs"]]
    assert [o.name for o in parsed.output] == ["probability"]
    assert not list(tmp_path.glob(".staging-*"))


def test_gpu_variant_can_ask_onnxruntime_for_tensorrt(published):
    version, _ = published
    parsed = config_for_version(version, "onnxruntime", tensorrt_accelerator=True).to_proto()
    (accelerator,) = parsed.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    with pytest.raises(ValueError, match="onnxruntime"):
        config_for_version(version, "python-ort", tensorrt_accelerator=True).to_proto()
