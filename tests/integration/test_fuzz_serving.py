"""Hypothesis sends malformed KServe-v2 requests to a real Triton, in the named layout (one tensor per field) and
the packed one (serving/packed.py); it must answer each with an error that names the problem, answer 200 only to a
request that is valid by the FeatureSpec (`is_valid`, written from the spec, not from the server), and keep
serving normal predictions."""

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
from fulqrun_ml.serving.packed import PACKED_CATEGORICAL, PACKED_NUMERIC, packed_columns
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


def valid_inputs(spec: FittedFeatureSpec, row: dict, packed: bool = False) -> list[dict]:
    numeric = {f.name for f in spec.spec.numeric}
    if packed:
        columns = packed_columns(
            {
                "inputs": [{"name": f.name, "dtype": "float32"} for f in spec.spec.numeric]
                + [{"name": f.name, "dtype": "string"} for f in spec.spec.categorical]
            }
        )
        return [
            {
                "name": PACKED_NUMERIC,
                "shape": [1, len(columns.numeric)],
                "datatype": "FP32",
                "data": [float(row[n]) for n in columns.numeric],
            },
            {
                "name": PACKED_CATEGORICAL,
                "shape": [1, len(columns.categorical)],
                "datatype": "BYTES",
                "data": [str(row[n]) for n in columns.categorical],
            },
        ]
    return [
        {
            "name": name,
            "shape": [1, 1],
            "datatype": "FP32" if name in numeric else "BYTES",
            "data": [float(row[name]) if name in numeric else str(row[name])],
        }
        for name in spec.spec.names
    ]


def _flat(data: object) -> list:
    """KServe-v2 JSON `data` may nest row-major; Triton flattens it."""
    if isinstance(data, list):
        return [v for item in data for v in _flat(item)]
    return [data]


def _good_value(value: object, feature: object | None) -> bool:
    """A numeric field's value: a JSON number, finite, >= 0 under log1p (NaN only where imputed); a category: text."""
    if feature is None:
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if math.isnan(value):
        return feature.impute_missing
    return math.isfinite(value) and not (feature.log1p and value < 0)


def is_valid(spec: FittedFeatureSpec, inputs: list[dict], body: bytes | None) -> bool:
    """Whether the request is one the model must answer, in either layout, judged from the FeatureSpec alone."""
    if body is not None:
        return False
    numeric = {f.name: f for f in spec.spec.numeric}
    categorical = [f.name for f in spec.spec.categorical]
    layouts = {
        "named": {name: ("FP32", [1, 1], [numeric[name]]) for name in numeric}
        | {name: ("BYTES", [1, 1], [None]) for name in categorical},
        "packed": {
            PACKED_NUMERIC: ("FP32", [1, len(numeric)], list(numeric.values())),
            PACKED_CATEGORICAL: ("BYTES", [1, len(categorical)], [None] * len(categorical)),
        },
    }
    names = [i["name"] for i in inputs]
    expected = next((layout for layout in layouts.values() if sorted(layout) == sorted(names)), None)
    if expected is None or len(set(names)) != len(names):
        return False
    for tensor in inputs:
        datatype, shape, features = expected[tensor["name"]]
        values = _flat(tensor["data"])
        if tensor["datatype"] != datatype or tensor["shape"] != shape or len(values) != len(features):
            return False
        if not all(_good_value(v, f) for v, f in zip(values, features, strict=True)):
            return False
    return True


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
    st.tuples(st.just("cell"), st.integers(0, 40), BAD_VALUES),  # one value inside a packed (or named) tensor
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3), packed=st.booleans())
def test_malformed_requests_get_errors_and_the_server_keeps_serving(server_and_row, mutations, packed):
    server, spec, row = server_and_row
    inputs = valid_inputs(spec, row, packed)
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
            elif kind == "cell":
                cells = target["data"] if isinstance(target["data"], list) else [target["data"]]
                if cells:
                    cells[where % len(cells)] = what
                target["data"] = cells
    payload = body if body is not None else json.dumps({"inputs": inputs}).encode()
    response = requests.post(f"http://{server.http_url}/v2/models/deal_win/infer", data=payload, timeout=10)
    if response.status_code == 200:
        # Only a request that is still valid may succeed, and then with a real probability.
        assert is_valid(spec, inputs, body), f"answered 200 to an invalid request: {payload[:400]!r}"
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
