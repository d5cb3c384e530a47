"""The gateway's request check: malformed KServe-v2 bodies are refused naming the part at fault."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.serving.gateway import BadRequest, check_infer_request


def body(inputs) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


GOOD = {"name": "value", "shape": [2, 1], "datatype": "FP32", "data": [[1.0], [2.0]]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": 5}', "'inputs' must be a non-empty list"),
        (body([{"shape": [1], "datatype": "FP32", "data": [1]}]), r"inputs\[0\] must be an object with a string"),
        (body([{**GOOD, "shape": [2, -1]}]), "input 'value': 'shape' must be a list of non-negative integers"),
        (body([{**GOOD, "data": [1.0]}]), r"input 'value': shape \[2, 1\] needs 2 value\(s\), 'data' has 1"),
        (body([{**GOOD, "data": [{"a": 1}, 2]}]), "holds an object"),
        (
            body([{**GOOD, "shape": [1], "data": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]),
            "nested",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_requests_are_named(raw, message):
    with pytest.raises(BadRequest, match=message):
        check_infer_request(raw, None)


def test_well_formed_requests_pass_including_the_binary_extension():
    check_infer_request(body([GOOD]), None)
    binary = {"name": "value", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
    header = body([binary])
    check_infer_request(header + b"\x00" * 8, str(len(header)))
    with pytest.raises(BadRequest, match="outside the body"):
        check_infer_request(header, str(len(header) + 1))
