"""A real Triton: the model-control API needs the control key, readiness covers the served models, and malformed
inference requests get 400 from the gateway (Triton 2.51 alone answers 500)."""

from __future__ import annotations

import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from fulqrun_ml.serving.access import CONTROL_HEADER
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.control import ModelController
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration
KEY = "planted-control-key-7f3a9c"


@pytest.fixture(scope="module")
def served(published, tmp_path_factory):
    version, _ = published
    repo = tmp_path_factory.mktemp("repo")
    TritonRepositoryBuilder(repo).add(version, config_for_version(version))
    with TritonServer(repo, explicit_models=["deal_win"], control_key=KEY, gateway=True) as server:
        yield server, repo


def test_unload_without_the_key_is_refused_and_the_model_keeps_serving(served):
    server, _ = served
    base = f"http://{server.http_url}/v2/repository"
    for headers in ({}, {CONTROL_HEADER: "wrong"}):
        answer = requests.post(f"{base}/models/deal_win/unload", headers=headers, timeout=10)
        assert answer.status_code in (401, 403), answer.text
        assert "restricted" in answer.text or "unauthori" in answer.text.lower()
    assert requests.post(f"{base}/index", timeout=10).status_code in (401, 403)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException):
        grpc.unload_model("deal_win")
    assert server.is_ready()
    with TritonPredictionClient(server.http_url, "deal_win") as client:
        assert client.is_ready()


def test_readiness_covers_the_served_models(served):
    server, repo = served
    controller = ModelController(server.http_url, TritonRepositoryBuilder(repo), control_key=KEY)
    try:
        controller.client.unload_model("deal_win")
        assert not controller.client.is_model_ready("deal_win")
        assert not server.is_ready()
        with TritonPredictionClient(server.http_url, "deal_win") as client:
            assert not client.is_ready()
        controller.client.load_model("deal_win")
        controller.wait_ready("deal_win", [1])
        assert server.is_ready()
    finally:
        controller.close()


def test_the_key_is_not_in_the_server_log(served):
    server, _ = served
    assert KEY not in server.log_tail(10_000)


def test_malformed_requests_get_400_naming_the_problem(served):
    server, _ = served
    url = f"http://{server.http_url}/v2/models/deal_win/infer"
    answer = requests.post(url, data=b"{not json", timeout=10)
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]
    mismatch = {"inputs": [{"name": "value", "shape": [2, 1], "datatype": "FP32", "data": [1.0]}]}
    answer = requests.post(url, json=mismatch, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == "input 'value': shape [2, 1] needs 2 value(s), 'data' has 1"
    answer = requests.post(url, json={"inputs": 5}, timeout=10)
    assert answer.status_code == 400 and "'inputs' must be a non-empty list" in answer.json()["error"]
    # Triton itself, behind the gateway, still answers 500 for the same body: what the gateway is for.
    direct = requests.post(f"http://127.0.0.1:{server.triton_http_port}/v2/models/deal_win/infer", json=mismatch)
    assert direct.status_code == 500


def test_good_requests_pass_the_gateway_unchanged(served, published):
    server, _ = served
    version, _ = published
    import json
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from fulqrun_ml.export.onnx_export import onnx_probabilities
    from fulqrun_ml.features.spec import FittedFeatureSpec

    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = pd.read_parquet(Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet")
    sample = rows[spec.spec.names].head(20)
    with TritonPredictionClient(server.http_url, "deal_win") as client:
        np.testing.assert_allclose(
            client.predict(sample), onnx_probabilities(version.path / "model.onnx", spec, sample), atol=1e-6
        )
