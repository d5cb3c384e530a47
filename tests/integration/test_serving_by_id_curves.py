"""`<model>_by_id` for a model whose answer is a curve: the close-timing survival model ([N, K] outputs).

Served through the real `fulqrun-ml serve` config (Hydra, `serving.by_id.*` overrides) and
`deploy.build_repositories`; features written by `OnlineStore.write` under a view declared here with the
survival model's own FeatureSpec and compute function, so the view is found by its features (no model tie).
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.close_timing_features import CLOSE_TIMING_FEATURES, compute_close_timing_features
from fulqrun_ml.online.store import OnlineStore, as_of_now
from fulqrun_ml.online.views import FeatureView
from fulqrun_ml.project import compose_config
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

pytestmark = pytest.mark.integration
NAME = "close_timing_survival"
VIEW = FeatureView(
    name="by_id_curve_test_features",
    entity="opportunity",
    entity_column="opportunity_id",
    spec=CLOSE_TIMING_FEATURES,
    compute=compute_close_timing_features,  # type: ignore[arg-type]
    ttl=timedelta(hours=1),
)


@pytest.fixture(scope="module")
def served(compose_train, tmp_path_factory, tiny_crm, redis_url):
    root = tmp_path_factory.mktemp("by_id_curves")
    cfg = compose_train(
        root / "run",
        "task=close_timing_survival",
        "model=mlp",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"paths.root_dir={root}",
    )
    models = root / "models"
    version, _ = export_run(Path(train(cfg)["run_dir"]), models)
    serve_cfg = compose_config(
        "serve",
        [
            f"paths.models_dir={models}",
            "serving.by_id.enabled=true",
            f"serving.by_id.redis_url={redis_url}",
            "serving.prediction_log.enabled=false",
        ],
    )
    repo, names = build_repositories(version, serve_cfg.serving, models)
    assert names == [NAME, f"{NAME}_reasons", f"{NAME}_by_id"]
    opps = tiny_crm.tables.opportunities
    ids = opps.loc[~opps["stage"].isin(["closed_won", "closed_lost"]), "id"].head(12).tolist()
    index = pd.DataFrame({"opportunity_id": ids, "as_of": tiny_crm.tables.activities["created_at"].max()})
    features = compute_close_timing_features(tiny_crm.tables, index)
    store = OnlineStore(redis_url)
    store.client.delete(*[VIEW.key(i) for i in ids])
    assert store.write(VIEW, features.assign(as_of=as_of_now())) == len(ids)
    store.register(VIEW)  # no model tie: found because its features are exactly the model's inputs
    with TritonServer(repo, explicit_models=[NAME, f"{NAME}_by_id"]) as server:
        yield server, features


def test_curves_by_id_equal_the_raw_record_endpoint(served):
    server, features = served
    ids = features["opportunity_id"].tolist()
    with TritonPredictionClient(server.grpc_url, NAME, protocol="grpc") as client:
        expected = client.predict_close_timing(features[CLOSE_TIMING_FEATURES.names])
        rows = client.predict_by_id([*ids, "no-such-deal"])
    assert [r.status for r in rows] == ["ok"] * len(ids) + ["unknown"]
    curves = np.array([r.outputs["close_probability"] for r in rows[:-1]])
    np.testing.assert_allclose(curves, expected.close_probability, atol=1e-6)
    np.testing.assert_allclose([r.outputs["expected_days"] for r in rows[:-1]], expected.expected_days, atol=1e-5)
    unknown = rows[-1].outputs["close_probability"]
    assert len(unknown) == expected.close_probability.shape[1] and all(math.isnan(v) for v in unknown)


def test_a_batch_of_only_unknown_ids_keeps_the_declared_curve_width(served):
    server, features = served
    with TritonPredictionClient(server.grpc_url, NAME, protocol="grpc") as client:
        width = client.predict_close_timing(features[CLOSE_TIMING_FEATURES.names].head(1)).close_probability.shape[1]
        rows = client.predict_by_id(["nope-1", "nope-2"])
    assert [r.status for r in rows] == ["unknown", "unknown"]
    assert all(len(r.outputs["close_probability"]) == width for r in rows)
