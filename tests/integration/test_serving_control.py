"""Versions on a live server: rollback without failed requests, A/B split with server-side counts, reasons."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.export.attribution import ablation_effects
from fulqrun_ml.export.package import export_run, load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.control import ModelController, TrafficSplitter
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer
from tests.registry_copy import copy_version

pytestmark = pytest.mark.integration
REASON_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def two_versions(published, trained_run, tmp_path_factory):
    first = copy_version(published[0], tmp_path_factory.mktemp("control-models"))  # the session's stays read-only
    second, _ = export_run(Path(trained_run["run_dir"]), first.path.parent.parent, "deal_win")
    return first, second


@pytest.fixture(scope="module")
def live(two_versions, tmp_path_factory):
    first, second = two_versions
    repo = tmp_path_factory.mktemp("repo")
    builder = TritonRepositoryBuilder(repo)
    builder.add(second, config_for_version(second))
    builder.add(second, config_for_version(second, reasons_top_k=3))
    rows = pd.read_parquet(Path(json.loads((first.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet")
    spec = FittedFeatureSpec.load(first.path / "feature_spec.json")
    with TritonServer(repo, explicit_models=["deal_win", "deal_win_reasons"]) as server:
        controller = ModelController(server.http_url, builder)
        yield server, controller, rows[spec.spec.names], spec
        controller.close()


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_rollback_keeps_serving_every_request(live, two_versions):
    server, controller, rows, _ = live
    first, second = two_versions
    config = config_for_version(second)
    controller.deploy(second, config)
    assert controller.served_versions("deal_win") == [second.version]

    errors: list[Exception] = []
    seen: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with TritonPredictionClient(server.http_url, "deal_win") as client:
            i = 0
            while not stop.is_set():
                try:
                    seen.append(client.predict_detailed(rows.iloc[[i % len(rows)]])[0].model_version)
                except Exception as exc:  # any failure during the switch is what this test is about
                    errors.append(exc)
                i += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(seen) >= 50)
        controller.deploy(first, config)  # the rollback
        count_at_switch = len(seen)
        wait_for(lambda: len(seen) >= count_at_switch + 100)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert controller.served_versions("deal_win") == [first.version]
    assert seen[0] == str(second.version) and seen[-1] == str(first.version)


def test_ab_split_counts_match_the_server(live, two_versions):
    server, controller, rows, _ = live
    first, second = two_versions
    controller.deploy([first, second], config_for_version(second))
    before = controller.request_counts("deal_win")
    with TritonPredictionClient(server.http_url, "deal_win") as client:
        splitter = TrafficSplitter(client, {str(first.version): 0.7, str(second.version): 0.3}, seed=1)
        answered = [splitter.predict_detailed(rows.iloc[[i]])[0].model_version for i in range(200)]
    after = controller.request_counts("deal_win")
    for version, sent in splitter.sent.items():
        assert answered.count(version) == sent
        assert after[int(version)] - before.get(int(version), 0) == sent
    assert 110 <= splitter.sent[str(first.version)] <= 170  # ~70% of 200


def test_traffic_weights_are_validated(live):
    server, *_ = live
    with TritonPredictionClient(server.http_url, "deal_win") as client, pytest.raises(ValueError, match="weights"):
        TrafficSplitter(client, {"1": -1.0})


def test_served_reasons_match_captum_offline(live, two_versions, trained_run):
    server, _, rows, spec = live
    _, second = two_versions
    sample = rows.head(20)
    with TritonPredictionClient(server.http_url, "deal_win_reasons") as client:
        served = client.predict_detailed(sample)
    with TritonPredictionClient(server.http_url, "deal_win") as plain:
        np.testing.assert_allclose([p.probability for p in served], plain.predict(sample), atol=1e-6)
    calibration = json.loads((second.path / "calibration.json").read_text())  # the whole record: Platt has a bias
    offline = ablation_effects(load_trained_net(Path(trained_run["run_dir"]), spec), spec, sample, calibration)
    for prediction, (_, effects) in zip(served, offline.iterrows(), strict=True):
        reasons = prediction.reasons
        assert reasons is not None and 0 < len(reasons["positive"]) + len(reasons["negative"]) <= 6
        for item in reasons["positive"] + reasons["negative"]:
            assert abs(item["effect"] - effects[item["field"]]) <= REASON_TOLERANCE, item
        top = effects.sort_values(ascending=False)
        expected_positive = [f for f, v in top.items() if v > REASON_TOLERANCE][:3]
        served_positive = [r["field"] for r in reasons["positive"] if r["effect"] > REASON_TOLERANCE]
        assert served_positive == expected_positive[: len(served_positive)]
