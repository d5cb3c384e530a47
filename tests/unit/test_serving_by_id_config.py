"""`<name>_by_id` config: generated from the version, added by the deploy hook only when enabled, no secrets."""

from __future__ import annotations

import json

import pytest
from google.protobuf import text_format
from omegaconf import OmegaConf
from tritonclient.grpc import model_config_pb2 as pb

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.by_id import by_id_config
from fulqrun_ml.serving.codec import by_id_name, id_column
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.predict import read_ids
from fulqrun_ml.serving.repository import TritonRepositoryBuilder

URL = "redis://127.0.0.1:6390/0"


def tabular_version(tmp_path, metadata=None) -> ModelVersion:
    path = tmp_path / "deal_win" / "3"
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.onnx").write_bytes(b"onnx")
    (path / "feature_spec.json").write_text(json.dumps({"numeric": [{"name": "value"}], "categorical": []}))
    meta = metadata or {
        "inputs": [{"name": "value", "dtype": "float32"}],
        "outputs": [{"name": "probability", "dtype": "float32"}],
    }
    return ModelVersion(name="deal_win", version=3, path=path, metadata=meta)


def serving(**by_id) -> dict:
    config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "serving" / "cpu.yaml"), resolve=False)
    config["prediction_log"] = {"enabled": False}
    if by_id:
        config["by_id"] = by_id
    return config


def test_config_takes_ids_and_returns_the_model_outputs_plus_status(tmp_path):
    version = tabular_version(tmp_path)
    config = by_id_config(version, URL, max_batch_size=128, instance_count=2)
    model_dir = TritonRepositoryBuilder(tmp_path / "repo").add(version, config)
    parsed = text_format.Parse((model_dir / "config.pbtxt").read_text(), pb.ModelConfig())
    assert model_dir.name == "deal_win_by_id" and parsed.backend == "python" and parsed.max_batch_size == 128
    assert [(i.name, i.data_type) for i in parsed.input] == [("ids", pb.TYPE_STRING)]
    assert [o.name for o in parsed.output] == ["probability", "status", "as_of"]
    params = {k: v.string_value for k, v in parsed.parameters.items()}
    assert params["target_model"] == "deal_win" and params["target_version"] == "3"
    assert params["redis_url"] == URL
    files = {p.name for p in (model_dir / "3").iterdir()}
    assert {"feature_spec.json", "model.py"} <= files and "model.onnx" not in files  # no graph of its own
    assert "`<model>_by_id`" in (model_dir / "3" / "model.py").read_text()  # the by-id template, not python-ort


def test_a_password_in_the_url_is_refused_because_triton_shows_configs(tmp_path):
    with pytest.raises(FulqrunMLError, match="FULQRUN_REDIS_PASSWORD"):
        by_id_config(tabular_version(tmp_path), "redis://:s3cret@127.0.0.1:6379/0")
    with pytest.raises(FulqrunMLError, match="redis://"):
        by_id_config(tabular_version(tmp_path), "http://127.0.0.1:6379")


def test_tensor_models_are_not_served_by_id(tmp_path):
    meta = {
        "inputs": [{"name": "history", "dtype": "float32", "shape": [-1, 8]}],
        "outputs": [{"name": "quantiles", "dtype": "float32"}],
    }
    with pytest.raises(FulqrunMLError, match="tabular"):
        by_id_config(tabular_version(tmp_path, meta), URL)


def test_deploy_hook_adds_the_endpoint_only_when_enabled(tmp_path):
    version = tabular_version(tmp_path)
    assert "deal_win_by_id" not in [c.name for c in cpu_serving_configs(version, serving())]
    configs = cpu_serving_configs(version, serving(enabled=True, redis_url=URL))
    assert [c.name for c in configs][-1] == "deal_win_by_id"
    assert configs[-1].max_batch_size == configs[0].max_batch_size  # one by-id batch fits one raw request


def test_sdk_helpers():
    assert by_id_name("deal_win") == by_id_name("deal_win_by_id") == "deal_win_by_id"
    assert id_column(["a", "b"]).shape == (2, 1)
    with pytest.raises(FulqrunMLError, match="expected text ids"):
        id_column(["a", None])  # type: ignore[list-item]


def test_read_ids_from_a_list_or_a_file(tmp_path):
    assert read_ids(" a, b,,c ") == ["a", "b", "c"]
    lines = tmp_path / "ids.txt"
    lines.write_text("x\n\n y \n")
    assert read_ids(str(lines)) == ["x", "y"]
    table = tmp_path / "ids.csv"
    table.write_text("opportunity_id,value\nq1,3\nq2,4\n")
    assert read_ids(str(table)) == ["q1", "q2"]
    no_id = tmp_path / "bad.csv"
    no_id.write_text("value\n3\n")
    with pytest.raises(FulqrunMLError, match="no id column"):
        read_ids(str(no_id))
