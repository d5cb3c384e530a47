"""The packed request layout (serving/packed.py) on a real Triton, next to the named one.

Guarantees checked: both layouts give the same predictions as onnxruntime on the same records (one FeatureSpec,
one graph); the SDK sends packed by default; a bad value in a packed column gets an error naming its field, also
when the published column order differs from the feature spec's; a malformed packed request is refused by name;
and, on the tabular backend, invalid UTF-8 in a categorical field is a field error and one bad request inside a
dynamic batch fails alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from fulqrun_ml.benchmarks.serving_measure import _model_stats
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.serving.client import AsyncTritonPredictionClient, TritonPredictionClient
from fulqrun_ml.serving.codec import raise_for_server_error
from fulqrun_ml.serving.packed import (
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    PACKED_CATEGORICAL,
    PACKED_NUMERIC,
    packed_columns,
)
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration
SHUFFLED = "deal_win_shuffled"  # same version, packed columns published in reverse order
BATCHED = "deal_win_batched"  # long queue delay: concurrent requests land in one dynamic batch


@pytest.fixture(scope="module")
def served(published, tmp_path_factory):
    version, _ = published
    repo = tmp_path_factory.mktemp("packed-repo")
    builder = TritonRepositoryBuilder(repo)
    config = config_for_version(version, max_batch_size=64)
    builder.add(version, config)
    columns = packed_columns(version.metadata)
    reverse = {
        NUMERIC_COLUMNS: json.dumps(list(columns.numeric)[::-1]),
        CATEGORICAL_COLUMNS: json.dumps(list(columns.categorical)[::-1]),
    }
    builder.add(version, dataclasses.replace(config, name=SHUFFLED, parameters={**config.parameters, **reverse}))
    batched = config_for_version(version, max_batch_size=64, max_queue_delay_microseconds=200_000)
    builder.add(version, dataclasses.replace(batched, name=BATCHED))
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = pd.read_parquet(Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet")
    with TritonServer(repo) as server:
        yield {"server": server, "version": version, "spec": spec, "rows": rows[spec.spec.names], "columns": columns}


def packed_request(served, rows: pd.DataFrame, model: str = "deal_win", order=None, numeric=None, categorical=None):
    """A plain tritonclient packed request; `order` (numeric names, categorical names) defaults to the published."""
    columns = served["columns"]
    names = order or (columns.numeric, columns.categorical)
    num = rows[list(names[0])].to_numpy(np.float32) if numeric is None else numeric
    cat = rows[list(names[1])].astype(str).to_numpy(object) if categorical is None else categorical
    inputs = []
    for name, array, dtype in ((PACKED_NUMERIC, num, "FP32"), (PACKED_CATEGORICAL, cat, "BYTES")):
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client = grpcclient.InferenceServerClient(served["server"].grpc_url)
    return client.infer(model, inputs).as_numpy("probability").reshape(-1)


def test_config_publishes_both_layouts_as_optional_inputs(served):
    with httpclient.InferenceServerClient(served["server"].http_url) as client:
        config = client.get_model_config("deal_win")
    columns = served["columns"]
    inputs = {i["name"]: i for i in config["input"]}
    assert (
        inputs[PACKED_NUMERIC]["dims"] == [len(columns.numeric)] and inputs[PACKED_NUMERIC]["data_type"] == "TYPE_FP32"
    )
    assert inputs[PACKED_CATEGORICAL]["dims"] == [len(columns.categorical)]
    assert all(i.get("optional") for i in config["input"])
    assert json.loads(config["parameters"][NUMERIC_COLUMNS]["string_value"]) == list(columns.numeric)
    assert set(columns.numeric) | set(columns.categorical) == set(served["spec"].spec.names)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_packed_and_named_layouts_equal_onnxruntime(served, protocol):
    server, spec, sample = served["server"], served["spec"], served["rows"].head(150)  # > max batch: chunks
    local = onnx_probabilities(served["version"].path / "model.onnx", spec, sample)
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonPredictionClient(url, "deal_win", protocol=protocol) as packed:
        assert packed.layout == "packed" and packed.interface.packed == served["columns"]
        np.testing.assert_allclose(packed.predict(sample), local, atol=1e-6)
    with TritonPredictionClient(url, "deal_win", protocol=protocol, layout="named") as named:
        np.testing.assert_allclose(named.predict(sample), local, atol=1e-6)
    # The packed request really is two tensors: what the SDK encodes for the server.
    lib = httpclient if protocol == "http" else grpcclient
    encoded = packed.interface.encode(lib, {k: v.to_numpy() for k, v in sample.head(3).items()}, "deal_win")
    assert [t.name() for t in encoded] == [PACKED_NUMERIC, PACKED_CATEGORICAL]


def test_published_column_order_is_what_the_backend_reads(served):
    sample = served["rows"].head(20)
    local = onnx_probabilities(served["version"].path / "model.onnx", served["spec"], sample)
    columns = served["columns"]
    reverse = (columns.numeric[::-1], columns.categorical[::-1])
    np.testing.assert_allclose(packed_request(served, sample, SHUFFLED, order=reverse), local, atol=1e-6)
    with TritonPredictionClient(served["server"].http_url, SHUFFLED) as client:  # the SDK follows the config
        np.testing.assert_allclose(client.predict(sample), local, atol=1e-6)


@pytest.mark.parametrize("model", ["deal_win", SHUFFLED])
def test_a_bad_packed_column_is_named_by_its_field(served, model):
    sample, columns = served["rows"].head(3), served["columns"]
    order = (
        (columns.numeric, columns.categorical)
        if model == "deal_win"
        else (columns.numeric[::-1], columns.categorical[::-1])
    )
    numeric = sample[list(order[0])].to_numpy(np.float32).copy()
    numeric[1, 0] = np.nan  # column 0 of the published order
    with pytest.raises(InferenceServerException, match=f"field '{order[0][0]}': contains NaN"):
        packed_request(served, sample, model, order=order, numeric=numeric)
    categorical = sample[list(order[1])].astype(str).to_numpy(object).copy()
    categorical[2, 1] = b"\xff\xfe"
    with pytest.raises(InferenceServerException, match=f"field '{order[1][1]}': is not valid UTF-8"):
        packed_request(served, sample, model, order=order, categorical=categorical)


def test_invalid_utf8_in_a_named_categorical_field_is_a_field_error(served):
    row = served["rows"].head(1)
    inputs = []
    for name, _ in TritonPredictionClient(served["server"].http_url, "deal_win").inputs:
        value = row[name].to_numpy()
        is_text = value.dtype == object
        array = (
            np.array([[b"\xc3\x28"]], object)
            if name == "stage"
            else value.reshape(1, 1).astype(object if is_text else np.float32)
        )
        tensor = httpclient.InferInput(name, [1, 1], "BYTES" if is_text else "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException, match="field 'stage': is not valid UTF-8") as info:
        httpclient.InferenceServerClient(served["server"].http_url).infer("deal_win", inputs)
    assert info.value.status() == "400"


def test_malformed_packed_requests_are_refused_by_name(served):
    sample, url = served["rows"].head(2), served["server"].http_url
    client = httpclient.InferenceServerClient(url)
    numeric = httpclient.InferInput(PACKED_NUMERIC, [2, len(served["columns"].numeric)], "FP32")
    numeric.set_data_from_numpy(sample[list(served["columns"].numeric)].to_numpy(np.float32))
    with pytest.raises(InferenceServerException, match=f"field '{PACKED_CATEGORICAL}': missing input"):
        client.infer("deal_win", [numeric])
    categorical = httpclient.InferInput(PACKED_CATEGORICAL, [2, len(served["columns"].categorical)], "BYTES")
    categorical.set_data_from_numpy(sample[list(served["columns"].categorical)].astype(str).to_numpy(object))
    value = httpclient.InferInput("value", [2, 1], "FP32")
    value.set_data_from_numpy(sample[["value"]].to_numpy(np.float32))
    with pytest.raises(InferenceServerException, match="field 'value': send either the packed layout"):
        client.infer("deal_win", [numeric, categorical, value])
    with pytest.raises(InferenceServerException, match="field 'stage': missing input"):  # named, one field short
        with TritonPredictionClient(url, "deal_win", layout="named") as sdk:
            inputs = sdk.interface.encode(httpclient, {k: v.to_numpy() for k, v in sample.items()}, "deal_win", "named")
        client.infer("deal_win", [t for t in inputs if t.name() != "stage"])
    narrow = httpclient.InferInput(PACKED_NUMERIC, [2, 3], "FP32")
    narrow.set_data_from_numpy(np.ones((2, 3), np.float32))
    with pytest.raises(FieldValidationError) as info:  # Triton's own width check, mapped by the SDK's codec
        try:
            client.infer("deal_win", [narrow])
        except InferenceServerException as exc:
            raise_for_server_error(exc)
    assert info.value.field == PACKED_NUMERIC
    with TritonPredictionClient(url, "deal_win") as sdk:
        assert np.isfinite(sdk.predict(sample)).all()


@pytest.mark.parametrize("layout", ["packed", "named"])
def test_one_bad_request_in_a_dynamic_batch_fails_alone(served, layout):
    """Eight concurrent requests share one dynamic batch (200 ms queue delay); the one with a bad field gets
    that field's error and the other seven their onnxruntime answers."""
    server, spec, sample = served["server"], served["spec"], served["rows"].head(14)
    local = onnx_probabilities(served["version"].path / "model.onnx", spec, sample)
    bad = sample.head(2).copy()
    bad.loc[bad.index[1], "value"] = -5.0  # log1p field: must be >= 0
    before = _model_stats(server, BATCHED)

    async def run():
        async with AsyncTritonPredictionClient(server.grpc_url, BATCHED, layout=layout) as client:
            await client.interface()
            calls = [client.predict(sample.iloc[i : i + 2]) for i in range(0, 14, 2)]
            return await asyncio.gather(client.predict(bad), *calls, return_exceptions=True)

    error, *answers = asyncio.run(run())
    assert isinstance(error, FieldValidationError) and error.field == "value", error
    for i, answer in zip(range(0, 14, 2), answers, strict=True):
        np.testing.assert_allclose(answer, local[i : i + 2], atol=1e-6)
    after = _model_stats(server, BATCHED)
    executions = after["execution_count"] - before["execution_count"]
    assert executions < 8, f"the 8 requests ran in {executions} executions: they were not batched together"
