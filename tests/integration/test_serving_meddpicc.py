"""The served deal-win MEDDPICC model on a real Triton: by raw record with MEDDPICC history and note text, and
by opportunity id from a real Redis; plus the Triton text encoder's field errors.

Guarantees: a record carrying the deal's MEDDPICC writes and notes, the same deal by id (features written to the
online store by the view's compute, the training definition), and the computed feature row sent as is all get
the same probability; a bad note (not UTF-8, too long) is refused naming the field before anything is sent; the
served text encoder answers a bad text with an error naming `text[i]` and matches onnxruntime.

Slow (trains and exports a model, starts Triton): the same guarantees are covered fast by
tests/unit/test_text_fields.py (record -> model inputs, field errors) and
tests/integration/test_online_meddpicc.py (CDC -> Redis rows equal the training definition).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from omegaconf import OmegaConf
from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.export.package import export_run
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.views import DEAL_WIN_MEDDPICC_VIEW as VIEW
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.meddpicc_predict import predict_meddpicc_file, predict_meddpicc_records
from fulqrun_ml.serving.repository import TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.serving.text_encoder_repo import MODEL_NAME, write_text_encoder_model
from fulqrun_ml.text.onnx_encoder import OnnxBackend, export_text_encoder
from fulqrun_ml.training.train import train
from tests.unit.test_text_fields import records_from_crm

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "deal_win_meddpicc"


@pytest.fixture(scope="module")
def version(tmp_path_factory, compose_train):
    root = tmp_path_factory.mktemp("meddpicc_run")
    cfg = compose_train(
        root / "run", f"task={MODEL}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        f"paths.root_dir={root}",
    )  # fmt: skip
    run = train(cfg)
    published, _ = export_run(Path(run["run_dir"]), tmp_path_factory.mktemp("meddpicc_models"), MODEL)
    return published


@pytest.fixture(scope="module")
def served(version, redis_url, tmp_path_factory):
    url = redis_url.rsplit("/", 1)[0] + "/13"
    serving = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "serving" / "cpu.yaml"), resolve=False)
    serving |= {"max_batch_size": 64, "prediction_log": {"enabled": False}}
    serving["by_id"] = {"enabled": True, "redis_url": url, "socket_timeout_s": 0.5}
    repo = tmp_path_factory.mktemp("meddpicc_repo")
    for config in cpu_serving_configs(version, serving):
        if not config.name.endswith("_reasons"):
            TritonRepositoryBuilder(repo).add(version, config)
    onnx = export_text_encoder(tmp_path_factory.mktemp("text") / "text_encoder.onnx")
    write_text_encoder_model(repo, onnx)
    with TritonServer(repo) as server:
        yield server, url, onnx


@pytest.fixture(scope="module")
def deals(tiny_crm):
    tables = tiny_crm.tables
    opps = tables.opportunities
    open_ids = opps.loc[~opps["stage"].isin(["closed_won", "closed_lost"]), "id"].head(12).to_numpy()
    as_of = pd.Timestamp.now(tz="UTC").floor("ms")
    return tables, pd.DataFrame({"opportunity_id": open_ids, "as_of": as_of})


def test_by_record_with_history_and_text_by_id_and_by_features_agree(served, deals):
    server, url, _ = served
    tables, index = deals
    records, expected = records_from_crm(tables, index)
    store = OnlineStore(url)
    store.client.flushdb()
    store.write(VIEW, expected)
    store.register(VIEW, MODEL, None)
    by_record = [a["probability"] for a in predict_meddpicc_records(records, server.grpc_url, MODEL, "grpc")]
    with TritonPredictionClient(server.grpc_url, MODEL, protocol="grpc") as client:
        by_features = client.predict(expected[VIEW.spec.names])
        rows = client.predict_by_id(index["opportunity_id"].tolist())
    assert {r.status for r in rows} == {"ok"}
    np.testing.assert_allclose(by_record, by_features, atol=1e-6)
    np.testing.assert_allclose([r.probability for r in rows], by_features, atol=1e-6)
    assert np.ptp(by_features) > 1e-3, "the deals should not all score the same"


def test_bad_note_text_is_a_field_error_before_anything_is_sent(served, deals, tmp_path, run_cli):
    server, _, _ = served
    tables, index = deals
    records, _ = records_from_crm(tables, index.head(2))
    records[1]["notes"].append({"body": "x" * 5000, "created_at": "2025-01-01"})
    with pytest.raises(FieldValidationError, match="too long") as err:
        predict_meddpicc_records(records, server.grpc_url, MODEL, "grpc")
    assert err.value.field == f"records[1].notes[{len(records[1]['notes']) - 1}].body"
    path = tmp_path / "deals.jsonl"
    good = json.dumps(records[0]).encode()
    bad = json.dumps({**records[0], "notes": ["caf\u00e9"]}).encode().replace(b"caf\\u00e9", b"caf\xe9")
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(FieldValidationError, match="surrogate") as err:
        list(predict_meddpicc_file(path, server.grpc_url, MODEL))
    assert err.value.field == "records[1].notes[0]"
    cli = ["predict", "--url", server.grpc_url, "--protocol", "grpc", "--meddpicc", str(path)]
    code, _, stderr = run_cli(*cli)
    assert code == 2 and "records[1].notes[0]" in stderr and "Traceback" not in stderr
    path.write_bytes(good + b"\n")
    code, stdout, stderr = run_cli(*cli)
    assert code == 0, stderr[-500:]
    expected = predict_meddpicc_records(records[:1], server.grpc_url, MODEL, "grpc")[0]["probability"]
    assert json.loads(stdout.splitlines()[0])["probability"] == pytest.approx(expected, abs=1e-6)


def test_served_text_encoder_matches_onnxruntime_and_names_bad_text(served):
    server, _, onnx = served
    client = grpcclient.InferenceServerClient(server.grpc_url)
    texts = ["Budget approved by the CFO", "The champion went quiet after the pricing call"]
    tensor = grpcclient.InferInput("text", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
    served_vectors = client.infer(MODEL_NAME, [tensor]).as_numpy("embedding")
    np.testing.assert_allclose(served_vectors, OnnxBackend(onnx).embed(texts), atol=1e-5)
    for payload, reason in ((b"caf\xe9", "not valid UTF-8"), (b"y" * 4001, "too long")):
        bad = grpcclient.InferInput("text", [2, 1], "BYTES")
        bad.set_data_from_numpy(np.array([[b"fine"], [payload]], dtype=object))
        with pytest.raises(InferenceServerException, match=f"field 'text\\[1\\]': {reason}"):
            client.infer(MODEL_NAME, [bad])
    client.close()
