"""Hypothesis sends malformed KServe-v2 requests to a real Triton; it must answer each with an error
that names the problem, and keep serving normal predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server_and_row(published, tmp_path_factory):
    version, _ = published
    repo = tmp_path_factory.mktemp("fuzz-repo")
    TritonRepositoryBuilder(repo).add(version, config_for_version(version, max_batch_size=16))
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = pd.read_parquet(Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet")
    with TritonServer(repo) as server:
        yield server, spec, rows[spec.spec.names].iloc[0].to_dict()


def valid_inputs(spec: FittedFeatureSpec, row: dict) -> list[dict]:
    numeric = {f.name for f in spec.spec.numeric}
    return [
        {
            "name": name,
            "shape": [1, 1],
            "datatype": "FP32" if name in numeric else "BYTES",
            "data": [float(row[name]) if name in numeric else str(row[name])],
        }
        for name in spec.spec.names
    ]


BAD_VALUES = st.one_of(
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.floats(max_value=-1e-3, min_value=-1e9),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.booleans(),
)
MUTATIONS = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 19), BAD_VALUES),
    st.tuples(st.just("drop"), st.integers(0, 19), st.none()),
    st.tuples(st.just("extra"), st.text(min_size=1, max_size=8), st.none()),
    st.tuples(st.just("dtype"), st.integers(0, 19), st.sampled_from(["INT64", "FP64", "BYTES", "BOOL", "XYZ"])),
    st.tuples(st.just("shape"), st.integers(0, 19), st.lists(st.integers(-1, 40), max_size=4)),
    st.tuples(st.just("garbage"), st.binary(max_size=40), st.none()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_malformed_requests_get_errors_and_the_server_keeps_serving(server_and_row, mutations):
    server, spec, row = server_and_row
    inputs = valid_inputs(spec, row)
    body: bytes | None = None
    for kind, where, what in mutations:
        if kind == "garbage":
            body = where
        elif kind == "extra":
            inputs.append({"name": f"x_{where}", "shape": [1, 1], "datatype": "FP32", "data": [1.0]})
        elif inputs:
            target = inputs[where % len(inputs)]
            if kind == "drop":
                inputs.remove(target)
            elif kind == "value":
                target["data"] = [what]
            elif kind == "dtype":
                target["datatype"] = what
            elif kind == "shape":
                target["shape"] = what
    payload = body if body is not None else json.dumps({"inputs": inputs}).encode()
    response = requests.post(f"http://{server.http_url}/v2/models/deal_win/infer", data=payload, timeout=10)
    if response.status_code == 200:
        # Only a request that is still well-formed may succeed, and then with a real probability.
        probability = response.json()["outputs"][0]["data"][0]
        assert 0.0 < probability < 1.0
    else:
        error = response.json()["error"]
        assert error and "Traceback" not in error
        if error.startswith("field '"):  # our model's validation: always a client error
            assert response.status_code == 400, (response.status_code, error)
        else:  # Triton's own frontend checks; it classifies a few JSON parse failures as 500
            assert 400 <= response.status_code <= 500, (response.status_code, error)
    assert server.is_ready()
    with TritonPredictionClient(server.http_url, "deal_win") as client:
        assert np.isfinite(client.predict([row])).all()
