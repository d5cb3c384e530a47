"""Triton repository generation: typed config -> validated protobuf text, standard layout."""

import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.repository import (
    TensorSpec,
    TritonModelConfig,
    TritonRepositoryBuilder,
    config_for_version,
    cpu_variant,
    serving_spec,
)


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
        assert parsed.backend == "python" and files == [
            "feature_spec.json",
            "model.onnx",
            "model.py",
            "prediction_spool.py",
            "triton_bytes.py",
        ]
    else:
        assert parsed.platform == "onnxruntime_onnx" and files == ["feature_spec.json", "model.onnx"]
        assert parsed.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    named = [i["name"] for i in version.metadata["inputs"]]
    packed = ["packed_numeric", "packed_categorical"] if variant == "python-ort" else []  # serving/packed.py
    assert [i.name for i in parsed.input] == named + packed
    assert all(i.optional for i in parsed.input) == (variant == "python-ort")
    assert [o.name for o in parsed.output] == ["probability"]
    assert not list(tmp_path.glob(".staging-*"))


def test_gpu_variant_can_ask_onnxruntime_for_tensorrt(published):
    version, _ = published
    parsed = config_for_version(version, "onnxruntime", tensorrt_accelerator=True).to_proto()
    (accelerator,) = parsed.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    with pytest.raises(ValueError, match="onnxruntime"):
        config_for_version(version, "python-ort", tensorrt_accelerator=True).to_proto()


# Tensor-input models: versions built here from their metadata (the exporters' format), no ONNX export needed.
FORECAST_META = {
    "inputs": [
        {"name": "history", "dtype": "float32", "shape": [-1, 8]},
        {"name": "calendar", "dtype": "float32", "shape": [-1, 3, 4]},
        {"name": "series", "dtype": "int64", "shape": [-1]},
    ],
    "outputs": [{"name": "quantiles", "dtype": "float32", "shape": [-1, 3, 5]}],
    "quantiles": [0.05, 0.25, 0.5, 0.75, 0.95],
}
SEQUENCE_META = {
    "inputs": [
        {"name": "value", "dtype": "float32"},
        {"name": "score", "dtype": "float32"},
        {"name": "stage", "dtype": "string"},
        {"name": "event_type", "dtype": "int64", "shape": ["batch", "length"]},
        {"name": "delta_days", "dtype": "float32", "shape": ["batch", "length"]},
    ],
    "outputs": [{"name": "probability", "dtype": "float32"}],
}


def tensor_version(root, name, metadata, files):
    path = root / name / "1"
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"onnx")  # copied, never parsed, by the repository builder
    for file, payload in files.items():
        (path / file).write_text(json.dumps(payload))
    return ModelVersion(name=name, version=1, path=path, metadata=metadata)


@pytest.fixture
def forecaster(tmp_path):
    return tensor_version(tmp_path, "revenue_forecast", FORECAST_META, {"series_index.json": {"groups": ["a", "b"]}})


@pytest.fixture
def sequence_model(tmp_path):
    features = {
        "numeric": [
            {"name": "value", "description": "", "log1p": True, "impute_missing": False},
            {"name": "score", "description": "", "log1p": False, "impute_missing": True},
        ],
        "categorical": [{"name": "stage", "description": ""}],
    }
    vocabulary = {"max_len": 12, "known": {"event_type": ["call", "email", "meeting"]}}
    files = {"feature_spec.json": features, "sequence_vocab.json": vocabulary}
    return tensor_version(tmp_path, "deal_win_sequence", SEQUENCE_META, files)


def test_forecaster_config_takes_its_shapes_from_metadata(forecaster):
    assert cpu_variant(forecaster) == "python-tensor"
    parsed = config_for_version(forecaster, "python-tensor", max_batch_size=32).to_proto()
    assert parsed.backend == "python"
    shapes = [(i.name, list(i.dims), i.HasField("reshape"), list(i.reshape.shape)) for i in parsed.input]
    assert shapes == [("history", [8], False, []), ("calendar", [3, 4], False, []), ("series", [1], True, [])]
    assert [(o.name, list(o.dims)) for o in parsed.output] == [("quantiles", [3, 5])]
    assert json.loads(parsed.parameters["quantiles"].string_value) == FORECAST_META["quantiles"]
    with pytest.raises(ValueError, match="python-tensor"):
        config_for_version(forecaster, "python-ort")
    with pytest.raises(ValueError, match="reasons"):
        config_for_version(forecaster, "python-tensor", reasons_top_k=3)


def test_tabular_versions_keep_python_ort(published):
    version, _ = published
    assert cpu_variant(version) == "python-ort"
    with pytest.raises(ValueError, match="python-ort"):
        config_for_version(version, "python-tensor")


def test_serving_spec_carries_shapes_nan_policy_and_index_ranges(sequence_model, forecaster):
    spec = serving_spec(sequence_model)
    rules = {r["name"]: r for r in spec["inputs"]}
    assert rules["value"] == {
        "name": "value",
        "dtype": "float32",
        "shape": ["batch", 1],
        "allow_nan": False,
        "min": 0.0,
    }
    assert rules["score"]["allow_nan"] is True and "min" not in rules["score"]
    assert rules["event_type"] == {
        "name": "event_type",
        "dtype": "int64",
        "shape": ["batch", "length"],
        "min": 0,
        "max": 4,  # padding 0, unknown 1, three known values 2..4
    }
    assert spec["axes"] == {"length": {"max": 12}}
    series = {r["name"]: r for r in serving_spec(forecaster)["inputs"]}["series"]
    assert (series["shape"], series["min"], series["max"]) == (["batch"], 0, 2)
    variable = config_for_version(sequence_model, "python-tensor").to_proto()
    assert [list(i.dims) for i in variable.input] == [[1], [1], [1], [-1], [-1]]


def test_builder_writes_the_tensor_backend_and_its_spec(sequence_model, tmp_path):
    config = config_for_version(sequence_model, "python-tensor")
    model_dir = TritonRepositoryBuilder(tmp_path / "repo").add(sequence_model, config)
    files = sorted(p.name for p in (model_dir / "1").iterdir())
    assert files == [
        "feature_spec.json",
        "model.onnx",
        "model.py",
        "prediction_spool.py",
        "sequence_vocab.json",
        "serving_spec.json",
    ]
    assert "serving_spec.json" in (model_dir / "1" / "model.py").read_text()
    assert json.loads((model_dir / "1" / "serving_spec.json").read_text()) == serving_spec(sequence_model)


def test_versions_served_together_must_share_inputs(sequence_model, tmp_path):
    other_meta = {**SEQUENCE_META, "inputs": SEQUENCE_META["inputs"][:-1]}
    files = {f: json.loads((sequence_model.path / f).read_text()) for f in ("feature_spec.json", "sequence_vocab.json")}
    other = tensor_version(tmp_path / "other", "deal_win_sequence", other_meta, files)
    other = ModelVersion(other.name, 2, other.path, other.metadata)
    config = config_for_version(sequence_model, "python-tensor")
    with pytest.raises(ValueError, match="versions served together must take the same inputs"):
        TritonRepositoryBuilder(tmp_path / "repo").add([sequence_model, other], config)


@pytest.mark.parametrize(
    ("shape", "message"),
    [([8, 4], "first axis must be the dynamic batch"), ([-1, 0], "positive ints"), ([], "non-empty list")],
)
def test_bad_metadata_shapes_name_the_tensor(forecaster, shape, message):
    meta = {**FORECAST_META, "inputs": [{"name": "history", "dtype": "float32", "shape": shape}]}
    with pytest.raises(ValueError, match=f"tensor 'history': .*{message}"):
        config_for_version(ModelVersion(forecaster.name, 1, forecaster.path, meta), "python-tensor")
