"""A close-timing survival model served by a real Triton (bundled tritonserver, Python backend, onnxruntime).

The version is trained (tiny data, one epoch) and published by the real exporter; the repository is written by the
`fulqrun-ml serve` path (`serving.deploy.build_repositories` with the real serve config), so what is tested is what
the command serves: both outputs equal onnxruntime on the published graph, over HTTP and gRPC, the bin edges reach
the client, the reasons endpoint explains P(closed within the horizon), and a bad field is named.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from fulqrun_ml.errors import FieldValidationError, ServingError
from fulqrun_ml.export.onnx_export import raw_feeds
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.project import compose_config
from fulqrun_ml.serving.client import AsyncTritonPredictionClient, TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

pytestmark = pytest.mark.integration
MAX_BATCH = 32
NAME = "close_timing_survival"


@pytest.fixture(scope="module")
def served(compose_train, tmp_path_factory):
    root = tmp_path_factory.mktemp("survival_serving")
    cfg = compose_train(
        root / "run",
        "task=close_timing_survival",
        "model=mlp",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"paths.root_dir={root}",
    )
    run_dir = Path(train(cfg)["run_dir"])
    models = root / "models"
    version, _ = export_run(run_dir, models)
    serve_cfg = compose_config("serve", [f"serving.max_batch_size={MAX_BATCH}", f"paths.models_dir={models}"])
    repo, names = build_repositories(version, serve_cfg.serving, models)
    assert names == [NAME, f"{NAME}_reasons"]
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = pd.read_parquet(run_dir / "holdout.parquet")[spec.spec.names].head(70)  # > MAX_BATCH: chunked
    with TritonServer(repo) as server:
        yield server, version, spec, rows


def local_outputs(version, spec, rows):
    session = ort.InferenceSession(str(version.path / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["close_probability", "expected_days"], raw_feeds(spec, rows))


def test_served_curves_equal_onnxruntime_over_http_and_grpc(served):
    server, version, spec, rows = served
    cdf, expected = local_outputs(version, spec, rows)
    edges = json.loads((version.path / "survival.json").read_text())["bin_edges"]
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        with TritonPredictionClient(url, NAME, protocol=protocol) as client:
            answer = client.predict_close_timing(rows)
            np.testing.assert_allclose(answer.close_probability, cdf, atol=1e-6)
            np.testing.assert_allclose(answer.expected_days, expected, rtol=1e-6, atol=1e-5)
            assert answer.bin_edges == tuple(float(e) for e in edges)
            assert answer.model_name == NAME and answer.model_version == str(version.version)
            one = client.predict_close_timing([rows.iloc[0].to_dict()])
            np.testing.assert_allclose(one.close_probability, cdf[:1], atol=1e-6)
            with pytest.raises(ServingError, match="predict_close_timing"):
                client.predict(rows.head(2))


def test_async_client_and_reasons_endpoint(served):
    server, version, spec, rows = served
    cdf, _ = local_outputs(version, spec, rows.head(3))

    async def curves():
        async with AsyncTritonPredictionClient(server.grpc_url, NAME) as client:
            return await client.predict_close_timing(rows.head(3))

    np.testing.assert_allclose(asyncio.run(curves()).close_probability, cdf, atol=1e-6)
    with TritonPredictionClient(server.http_url, f"{NAME}_reasons") as client:
        arrays = client.infer({name: rows[name].head(3).to_numpy() for name in spec.spec.names})
    np.testing.assert_allclose(arrays["close_probability"], cdf, atol=1e-6)
    reasons = [json.loads(r) for r in arrays["reasons"].reshape(-1)]
    assert len(reasons) == 3 and all(set(r) == {"positive", "negative"} for r in reasons)
    assert any(r["positive"] or r["negative"] for r in reasons)


def test_bad_field_is_named_and_the_server_keeps_serving(served):
    server, _, _, rows = served
    bad = rows.head(2).copy()
    bad.loc[bad.index[0], "value"] = np.nan
    with TritonPredictionClient(server.http_url, NAME) as client:
        with pytest.raises(FieldValidationError, match="value"):
            client.predict_close_timing(bad)
        assert client.predict_close_timing(rows.head(2)).close_probability.shape == (2, 13)


def test_predict_command_prints_the_curve_and_expected_days(served, tmp_path, run_cli):
    server, version, spec, rows = served
    path = tmp_path / "deals.jsonl"
    rows.head(3).assign(deal_ref=["a", "b", "c"]).to_json(path, orient="records", lines=True)
    code, stdout, stderr = run_cli("predict", "--input", str(path), "--url", server.http_url, "--model", NAME)
    assert code == 0, stderr[-2000:]
    lines = [json.loads(line) for line in stdout.strip().splitlines()]
    assert [line["deal_ref"] for line in lines] == ["a", "b", "c"]
    cdf, expected = local_outputs(version, spec, rows.head(3))
    edges = json.loads((version.path / "survival.json").read_text())["bin_edges"]
    assert list(lines[0]["close_probability"]) == [f"{e:g}d" for e in edges[1:]]
    np.testing.assert_allclose([list(line["close_probability"].values()) for line in lines], cdf, atol=1e-5)
    np.testing.assert_allclose([line["expected_days"] for line in lines], expected, atol=1e-3)
