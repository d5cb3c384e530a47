"""`scope_infer_request` without a server: ids of a `<model>_by_id` request (JSON and Triton's binary tensor layout,
other binary inputs untouched) and `parameters.entity_id` get the caller's organisation; the refusals; hostile
organisation ids and hostile binary segments (hypothesis) never escape the caller's scope or crash the gateway.
The real Triton + Redis path is tests/integration/test_tenant_serving.py."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulqrun_ml.data.tenancy import split_scoped_id
from fulqrun_ml.serving.tenant_gateway import (
    HEADER_LENGTH,
    ORG_HEADER,
    TenantRefused,
    _decode_bytes,
    _encode_bytes,
    scope_infer_request,
)


def _binary_request(ids: list[bytes], other: bytes = b"\x01\x02\x03\x04") -> tuple[bytes, dict[str, str]]:
    segment = _encode_bytes(ids)
    head = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": len(other)}},
                {
                    "name": "ids",
                    "shape": [len(ids), 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(segment)},
                },
            ]
        }
    ).encode()
    return head + other + segment, {HEADER_LENGTH: str(len(head))}


def _split(body: bytes, header_length: str) -> tuple[dict, bytes]:
    n = int(header_length)
    return json.loads(body[:n]), body[n:]


def test_binary_ids_are_scoped_and_the_other_inputs_bytes_are_unchanged():
    body, headers = _binary_request([b"d1", b"d2"])
    new_body, length = scope_infer_request("deal_win_by_id", body, {**headers, ORG_HEADER: "acme"}, enforce=True)
    request, binary = _split(new_body, length)
    assert binary[:4] == b"\x01\x02\x03\x04"
    ids_size = request["inputs"][1]["parameters"]["binary_data_size"]
    assert _decode_bytes(binary[4 : 4 + ids_size]) == [b"@acme/d1", b"@acme/d2"] and len(binary) == 4 + ids_size


def test_json_ids_and_the_logged_entity_id_are_scoped():
    body = json.dumps(
        {
            "parameters": {"entity_id": "d1,d2"},
            "inputs": [{"name": "ids", "shape": [2, 1], "datatype": "BYTES", "data": [["d1"], ["d2"]]}],
        }
    ).encode()
    new_body, length = scope_infer_request("deal_win_by_id", body, {ORG_HEADER: "acme"}, enforce=False)
    request = json.loads(new_body)
    assert length is None
    assert request["inputs"][0]["data"] == [["@acme/d1"], ["@acme/d2"]]
    assert request["parameters"]["entity_id"] == "@acme/d1,@acme/d2"


def test_without_an_organisation_enforced_is_403_and_single_tenant_passes_unchanged():
    body, headers = _binary_request([b"d1"])
    with pytest.raises(TenantRefused) as caught:
        scope_infer_request("deal_win_by_id", body, headers, enforce=True)
    assert caught.value.status == 403 and ORG_HEADER in str(caught.value)
    assert scope_infer_request("deal_win_by_id", body, headers, enforce=False) is None


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(org=st.text(max_size=20) | st.sampled_from(["../x", "a/b", "a:b", "*", "", "a\x00", "@b"]))
def test_a_hostile_organisation_is_400_or_a_key_safe_scope(org):
    body, headers = _binary_request([b"d1"])
    try:
        new_body, length = scope_infer_request("deal_win_by_id", body, {**headers, ORG_HEADER: org}, enforce=True)
    except TenantRefused as exc:
        assert exc.status == 400 and "organisation id" in str(exc)
        return
    _, binary = _split(new_body, length)
    (scoped,) = _decode_bytes(binary[4:])
    assert split_scoped_id(scoped.decode()) == (org, "d1")
    assert not set(org) & set("/:*?[]\\\x00 ")


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(segment=st.binary(max_size=24))
def test_a_hostile_binary_ids_segment_is_400_or_every_element_scoped(segment):
    head = json.dumps(
        {
            "inputs": [
                {"name": "ids", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(segment)}}
            ]
        }
    ).encode()
    headers = {HEADER_LENGTH: str(len(head)), ORG_HEADER: "acme"}
    try:
        new_body, length = scope_infer_request("deal_win_by_id", head + segment, headers, enforce=True)
    except TenantRefused as exc:
        assert exc.status == 400 and "'ids'" in str(exc)
        return
    _, binary = _split(new_body, length)
    assert all(value.startswith(b"@acme/") for value in _decode_bytes(binary))
    assert len(_decode_bytes(binary)) == len(_decode_bytes(segment))


def test_an_id_that_names_another_scope_stays_inside_the_callers():
    body, headers = _binary_request([b"@other/d1"])
    new_body, length = scope_infer_request("deal_win_by_id", body, {**headers, ORG_HEADER: "acme"}, enforce=True)
    _, binary = _split(new_body, length)
    assert _decode_bytes(binary[4:]) == [b"@acme/@other/d1"]  # a key in acme's namespace, not other's
    assert struct.unpack_from("<I", binary, 4)[0] == len(b"@acme/@other/d1")
