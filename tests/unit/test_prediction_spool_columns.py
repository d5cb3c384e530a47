"""The prediction log's fast columns (serving/prediction_spool.py `ScrubbedColumns`, `column_json` and
`batch_line(json_inputs=...)`) must write what the plain path writes: the same scrubbing (a value outside the
training vocabulary becomes UNSEEN, so free text never reaches the log) and a line the shipper reads back to the
same rows. Why it matters: the python-ort backend logs every answered batch through this path."""

from __future__ import annotations

import importlib.util
import json
import types

import numpy as np
import pytest

from fulqrun_ml.monitoring.prediction_log import explode
from fulqrun_ml.project import TEMPLATE_DIR


@pytest.fixture(scope="module")
def spool() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("prediction_spool_columns", TEMPLATE_DIR / "prediction_spool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VOCABULARIES = {"stage": ["Discovery", "Proposal", 'quote "x"', "caf\u00e9"], "region": ["EMEA", "AMER"], "empty": []}
VALUES = {
    "stage": ["Discovery", "jane@example.com", 'quote "x"', "caf\u00e9", "Proposal", "", "discovery"],
    "region": ["EMEA", "EMEA", "APAC", "AMER", "\u4f60\u597d", "EMEA", "AMER"],
    "empty": ["a", "b", "c", "d", "e", "f", "g"],
}
HEAD = {"model": "deal_win", "version": 1, "time": "2026-03-01T10:00:00+00:00", "latency_ms": 1.5}


@pytest.mark.parametrize("name", VALUES)
def test_a_column_is_the_json_of_the_scrubbed_list(spool, name):
    columns = spool.ScrubbedColumns(VOCABULARIES)
    expected = spool.scrub_categorical(VALUES[name], frozenset(VOCABULARIES[name]))
    assert columns.column(name, VALUES[name]) == json.dumps(expected, separators=(",", ":"))  # as batch_line
    assert json.loads(columns.column(name, VALUES[name])) == expected
    assert "jane@example.com" not in columns.column(name, VALUES[name])


@pytest.mark.parametrize("numeric", [True, False])
def test_spliced_line_reads_back_as_the_plain_line(spool, numeric):
    rows = len(VALUES["stage"])
    columns = spool.ScrubbedColumns(VOCABULARIES)
    inputs = {"value": spool.encode_column(np.arange(rows, dtype=np.float32).reshape(-1, 1))} if numeric else {}
    outputs = {"probability": spool.encode_column(np.full((rows, 1), 0.25, dtype=np.float32))}
    requests = [["r1", 3, ["a", "b", "c"]], ["r2", 4, None]]
    plain = {**inputs, **{n: spool.scrub_categorical(v, frozenset(VOCABULARIES[n])) for n, v in VALUES.items()}}
    fast = {name: columns.column(name, values) for name, values in VALUES.items()}
    spliced = spool.batch_line(HEAD, requests, inputs, outputs, json_inputs=fast)
    reference = spool.batch_line(HEAD, requests, plain, outputs)
    assert spliced.endswith(b"}\n") and spliced.count(b"\n") == 1
    assert json.loads(spliced) == json.loads(reference)
    assert explode(json.loads(spliced)) == explode(json.loads(reference))
    assert spool.batch_line(HEAD, requests, plain, outputs, json_inputs={}) == reference


ARRAYS = {
    "column": np.arange(5, dtype=np.float32).reshape(5, 1),
    "slice of a matrix": np.arange(15, dtype=np.float32).reshape(5, 3)[:, 1:2],
    "nan and inf": np.array([[np.nan], [np.inf], [-0.0]], dtype=np.float32),
    "wide": np.arange(12, dtype=np.float64).reshape(3, 4),
    "empty": np.zeros((0, 1), dtype=np.float32),
}


@pytest.mark.parametrize("case", ARRAYS)
def test_column_json_is_encode_column(spool, case):
    array = ARRAYS[case]
    assert json.loads(spool.column_json(array)) == spool.encode_column(array)
    assert spool.column_json(array) == json.dumps(spool.encode_column(array), separators=(",", ":"))
