"""A real Triton server (bundled tritonserver + Python backend + onnxruntime) on free loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration
MAX_BATCH = 64


@pytest.fixture(scope="module")
def served(published, tmp_path_factory):
    version, _ = published
    repo = tmp_path_factory.mktemp("repo")
    TritonRepositoryBuilder(repo).add(version, config_for_version(version, max_batch_size=MAX_BATCH))
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = pd.read_parquet(Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet")
    with TritonServer(repo) as server:
        yield server, version, spec, rows


def raw_request(server, spec, row: pd.Series, overrides: dict | None = None, drop: str | None = None):
    """Build a KServe-v2 request with plain tritonclient, letting a test break one field."""
    overrides = overrides or {}
    inputs = []
    for f in spec.spec.numeric + spec.spec.categorical:
        if f.name == drop:
            continue
        value, dtype = overrides.get(f.name, (row[f.name], None))
        if dtype is None:
            dtype = "FP32" if f in spec.spec.numeric else "BYTES"
        array = np.array(
            [[value]], dtype=object if dtype == "BYTES" else np.dtype(dtype.lower().replace("fp", "float"))
        )
        tensor = httpclient.InferInput(f.name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client = httpclient.InferenceServerClient(server.http_url)
    return client.infer("deal_win", inputs)


def assert_still_serving(server, spec, rows):
    assert server.is_ready()
    with TritonPredictionClient(server.http_url, "deal_win") as client:
        assert client.predict(rows[spec.spec.names].head(2)).shape == (2,)


def test_served_predictions_equal_onnxruntime(served):
    server, version, spec, rows = served
    sample = rows[spec.spec.names].head(200)  # > max_batch_size: the client chunks
    local = onnx_probabilities(version.path / "model.onnx", spec, sample)
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        with TritonPredictionClient(url, "deal_win", protocol=protocol) as client:
            np.testing.assert_allclose(client.predict(sample), local, atol=1e-6)
            one = client.predict([sample.iloc[0].to_dict()])
            np.testing.assert_allclose(one, local[:1], atol=1e-6)


def test_benchmarks_read_statistics_behind_the_control_key(served):
    """`bench serve` reads Triton's per-model statistics, which the restricted API keeps behind the control key:
    the benchmark's reader must send it (it broke silently once; no other test reads statistics)."""
    from fulqrun_ml.benchmarks.serving_measure import _model_stats

    server, _, spec, rows = served
    before = _model_stats(server, "deal_win")["inference_count"]
    with TritonPredictionClient(server.http_url, "deal_win") as client:
        client.predict(rows[spec.spec.names].head(3))
    assert _model_stats(server, "deal_win")["inference_count"] == before + 3


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("value", np.nan, "field 'value': contains NaN"),
        ("meetings_total", np.inf, "field 'meetings_total': contains NaN or infinite"),
        ("value", -10.0, "field 'value': must be >= 0"),
    ],
)
def test_bad_values_get_an_error_naming_the_field(served, field, value, expected):
    server, _, spec, rows = served
    with pytest.raises(InferenceServerException, match=expected):
        raw_request(server, spec, rows.iloc[0], {field: (value, "FP32")})
    assert_still_serving(server, spec, rows)


def test_missing_field_is_named(served):
    server, _, spec, rows = served
    # Inputs are optional (named or packed layout), so the backend, not Triton core, names the missing field.
    with pytest.raises(InferenceServerException, match=r"field 'stage': missing input"):
        raw_request(server, spec, rows.iloc[0], drop="stage")
    assert_still_serving(server, spec, rows)


def test_wrong_dtype_is_named(served):
    server, _, spec, rows = served
    with pytest.raises(InferenceServerException, match="input 'value' data-type is 'BYTES'"):
        raw_request(server, spec, rows.iloc[0], {"value": ("lots", "BYTES")})
    assert_still_serving(server, spec, rows)


def test_oversized_batch_is_refused(served):
    server, _, spec, rows = served
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for f in spec.spec.numeric + spec.spec.categorical:
        values = rows[f.name].head(MAX_BATCH + 1).to_numpy()
        array = values.astype(np.float32 if f in spec.spec.numeric else object).reshape(-1, 1)
        tensor = httpclient.InferInput(f.name, list(array.shape), "FP32" if f in spec.spec.numeric else "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException, match=f"batch-size must be <= {MAX_BATCH}"):
        client.infer("deal_win", inputs)
    assert_still_serving(server, spec, rows)


def test_sdk_maps_field_errors_to_exceptions(served):
    server, _, spec, rows = served
    record = rows[spec.spec.names].iloc[0].to_dict()
    with TritonPredictionClient(server.http_url, "deal_win") as client:
        with pytest.raises(FieldValidationError) as info:
            client.predict([{**record, "value": float("nan")}])
        assert info.value.field == "value"
        with pytest.raises(FieldValidationError, match="unknown field") as info:
            client.predict([{**record, "discount": 0.1}])
        assert info.value.field == "discount"
        with pytest.raises(FieldValidationError, match="expected a number") as info:
            client.predict([{**record, "value": "lots"}])
        assert info.value.field == "value"
        unseen = client.predict([{**record, "industry": "aerospace"}])  # unknown category -> the unknown embedding
        assert unseen.shape == (1,) and 0 < unseen[0] < 1
    assert_still_serving(server, spec, rows)


def test_predict_command_scores_json_lines(served, tmp_path, run_cli):
    server, version, spec, rows = served
    path = tmp_path / "deals.jsonl"
    rows[["opportunity_id", *spec.spec.names]].head(4).to_json(path, orient="records", lines=True)
    code, stdout, stderr = run_cli("predict", "--input", str(path), "--url", server.http_url)
    assert code == 0, stderr[-2000:]
    lines = [json.loads(line) for line in stdout.strip().splitlines()]
    assert [line["opportunity_id"] for line in lines] == rows["opportunity_id"].head(4).tolist()
    local = onnx_probabilities(version.path / "model.onnx", spec, rows.head(4))
    np.testing.assert_allclose([line["probability"] for line in lines], local, atol=1e-5)


def test_stop_leaves_no_processes(published, tmp_path):
    version, _ = published
    TritonRepositoryBuilder(tmp_path).add(version, config_for_version(version))
    server = TritonServer(tmp_path).start()
    pgid = os.getpgid(server.process.pid)
    server.stop()
    ps = subprocess.run(["ps", "-eo", "pgid="], capture_output=True, text=True).stdout.split()
    assert str(pgid) not in ps
    assert not server.is_ready()
