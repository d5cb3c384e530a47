"""Next best action served by a real Triton (bundled tritonserver, Python backend, onnxruntime).

A tiny `nba_uplift` is trained through the spine (1 epoch, small simulator world), published by the real exporter,
and its repository written by the `fulqrun-ml serve` path (`serving.deploy.build_repositories` with the real serve
config). The served `nba_uplift_actions` must give exactly the in-process SDK's ranking for the same records (same
actions, order, support flags and reasons; uplifts to float rounding), over HTTP and gRPC; a bad record gets an
error naming the field, locally and from the server itself, and the server keeps answering.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import compose_config
from fulqrun_ml.recommend.actions import CATEGORICAL_STATE, NUMERIC_STATE
from fulqrun_ml.recommend.sdk import recommend as recommend_in_process
from fulqrun_ml.recommend.serving_client import TritonRecommender
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

pytestmark = pytest.mark.integration
NAME, ACTIONS = "nba_uplift", "nba_uplift_actions"
MAX_BATCH = 16  # < the 40 records sent: the client chunks, the backend merges dynamic batches
TINY = [
    "task=nba_uplift",
    "task.datamodule.crm.n_opportunities=2500",
    "task.datamodule.crm.n_companies=360",
    "task.datamodule.crm.n_reps=12",
    "task.members=2",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
]
EXACT = ("opportunity_id", "rank", "type_channel", "gap", "slot", "content", "supported", "reason")


@pytest.fixture(scope="module")
def served(compose_train, tmp_path_factory):
    root = tmp_path_factory.mktemp("nba_serving")
    run_dir = Path(train(compose_train(root / "run", *TINY, f"paths.root_dir={root}"))["run_dir"])
    models = root / "models"
    version, _ = load_pipeline(run_dir).export(run_dir, models)  # what `fulqrun-ml export --run-dir` does
    serve_cfg = compose_config(
        "serve",
        [f"serving.max_batch_size={MAX_BATCH}", f"paths.models_dir={models}", "serving.prediction_log.enabled=false"],
    )
    repo, names = build_repositories(version, serve_cfg.serving, models)
    assert names == [NAME, ACTIONS]
    holdout = pd.read_parquet(run_dir / "holdout.parquet").drop(columns=["as_of"])
    records = holdout.sample(40, random_state=0).to_dict(orient="records")
    with TritonServer(repo) as server:
        yield server, version, models, repo, records


def test_repository_holds_the_registry_files_unchanged_and_the_generated_ones(served):
    _, version, _, repo, _ = served
    version_dir = repo / ACTIONS / str(version.version)
    for generated in ("model.py", "nba_rank.py", "encoder.onnx", "nba_serving.json"):
        assert (version_dir / generated).is_file(), generated
    for copied in ("model.onnx", "feature_spec.json", "propensity.json"):  # byte-identical: signatures still hold
        assert (version_dir / copied).read_bytes() == (version.path / copied).read_bytes(), copied


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_top_k_equals_the_in_process_sdk(served, protocol):
    server, _, models, _, records = served
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonRecommender(url, NAME, protocol=protocol) as recommender:
        answer = pd.DataFrame(recommender.recommend(records, k=3))
    local = pd.DataFrame(recommend_in_process(records, 3, models_dir=models))
    assert len(answer) == 3 * len(records) == len(local)
    assert list(answer.columns) == list(local.columns)
    for column in EXACT:
        assert answer[column].tolist() == local[column].tolist(), column
    for column in ("uplift_win_probability", "uplift_low", "uplift_high"):
        np.testing.assert_allclose(answer[column], local[column], rtol=0, atol=1e-9, err_msg=column)
    # The server reads the deal value as FP32: revenue agrees to float32 rounding of the value.
    np.testing.assert_allclose(
        answer["uplift_expected_revenue"], local["uplift_expected_revenue"], rtol=1e-6, atol=1e-6
    )
    assert (answer.groupby("opportunity_id")["uplift_win_probability"].diff().dropna() <= 1e-12).all()
    assert (answer["uplift_low"] <= answer["uplift_win_probability"]).all()


def test_k_per_request_is_honoured(served):
    server, _, _, _, records = served
    with TritonRecommender(server.http_url, NAME) as recommender:
        assert len(recommender.recommend(records[:2], k=1)) == 2
        assert len(recommender.recommend(records[:2], k=7)) == 14


def raw_request(record: dict, **override: object) -> list:
    """The record as a plain KServe-v2 request (no SDK checks), with fields overridden."""
    row = {**record, **override}
    inputs = [(name, np.array([[row[name]]], dtype=np.float32), "FP32") for name in NUMERIC_STATE]
    inputs += [(name, np.array([[str(row[name]).encode()]], dtype=object), "BYTES") for name in CATEGORICAL_STATE]
    inputs.append(("k", np.array([[row.get("k", 3)]], dtype=np.int64), "INT64"))
    out = []
    for name, array, dtype in inputs:
        tensor = httpclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


@pytest.mark.parametrize(
    ("field", "override"),
    [
        ("value", {"value": -5.0}),
        ("stage", {"stage": "closed_won"}),
        ("k", {"k": 0}),
        ("age_days", {"age_days": np.inf}),
    ],
)
def test_server_names_the_bad_field_and_keeps_serving(served, field, override):
    server, _, _, _, records = served
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException, match=f"field '{field}'"):
        client.infer(ACTIONS, raw_request(records[0], **override))
    good = client.infer(ACTIONS, raw_request(records[0]))
    assert good.as_numpy("recommendations").shape == (1, 1)
    assert server.process.poll() is None


def test_sdk_refuses_a_bad_record_by_field_before_sending(served):
    server, _, _, _, records = served
    with TritonRecommender(server.http_url, NAME) as recommender:
        missing = {k: v for k, v in records[0].items() if k != "days_in_stage"}
        with pytest.raises(FieldValidationError) as caught:
            recommender.recommend([records[1], missing], k=2)
        assert caught.value.field == "days_in_stage"
        with pytest.raises(FieldValidationError) as caught:
            recommender.recommend([{**records[0], "stage": "closed_lost"}], k=2)
        assert caught.value.field == "stage"
        with pytest.raises(FieldValidationError) as caught:
            recommender.recommend(records[:1], k=0)
        assert caught.value.field == "k"


def test_served_ranking_module_is_the_twin_of_recommend_ranking():
    """nba_rank.py (served, numpy only) against recommend/ranking.py on random effects, without a server: same
    actions, order, support flags, numbers and reasons, and the same support floor and interval z."""
    from fulqrun_ml.data.simulator_actions import COMPONENTS
    from fulqrun_ml.recommend.learners import SUPPORT_FLOOR
    from fulqrun_ml.recommend.ranking import Z95, rank_actions
    from fulqrun_ml.serving.nba_files import SUPPORT_FLOOR as SERVED_FLOOR
    from fulqrun_ml.serving.nba_files import Z95 as SERVED_Z
    from fulqrun_ml.serving.nba_rank import ActionSpace

    assert (SERVED_FLOOR, SERVED_Z) == (SUPPORT_FLOOR, Z95)
    rng = np.random.default_rng(3)
    space = ActionSpace({c: list(a) for c, a in COMPONENTS.items()}, SUPPORT_FLOOR, Z95)
    n, width = 12, len(space.outputs)
    uplift, sd = rng.normal(0, 0.05, (n, width)), rng.uniform(0, 0.03, (n, width))
    support = rng.uniform(size=(n, width)) > 0.2
    states = pd.DataFrame(
        {
            "opportunity_id": [f"o{i}" for i in range(n)],
            "value": rng.uniform(1e3, 1e5, n),
            "meddpicc_gaps": rng.integers(0, 8, n).astype(float),
            "stage": rng.choice(["prospecting", "proposal"], n),
            "size": rng.choice(["smb", "enterprise"], n),
            "industry": rng.choice(["retail", "software"], n),
        }
    )
    expected = rank_actions(states, uplift, sd, support, k=4)
    facts = states.to_dict(orient="records")
    served = pd.DataFrame(
        [
            {"opportunity_id": f["opportunity_id"], **a}
            for f, rows in zip(facts, space.rank(uplift, sd, support, facts, 4), strict=True)
            for a in rows
        ]
    )
    assert list(served.columns) == list(expected.columns)
    for column in EXACT:
        assert served[column].tolist() == expected[column].tolist(), column
    numbers = ["uplift_win_probability", "uplift_low", "uplift_high", "uplift_expected_revenue"]
    np.testing.assert_allclose(served[numbers].to_numpy(float), expected[numbers].to_numpy(float), rtol=1e-12)
