"""The caller's organisation on the HTTP inference path: `X-Fulqrun-Org` scopes every id a request names.

Why in the gateway and not in the Triton backends: the by-id backend reads Redis keys built from the ids it is
given, and the online store keeps each tenant's rows under the scoped id `@<org>/<id>` (data/tenancy.py,
online/tenant_store.py). Rewriting each id to `scoped_id(org, id)` before the request reaches Triton confines the
lookup to the caller's namespace: another organisation's deal id finds no key and answers `status: unknown`,
exactly like an id that does not exist (no existence oracle), and no backend needs a change. The same rewrite of
the `entity_id` request parameter makes the prediction log (serving/prediction_spool.py) record scoped ids, which
`monitoring/tenant_log.py` already splits into organisation and id.

Rules (`scope_infer_request`):
- with the header: the organisation id is checked (`check_org`; a bad one is a 400), the `ids` input of a
  `<model>_by_id` request is scoped (JSON `data` or the binary tensor extension), and so is `parameters.entity_id`;
- without it: refused with 403 when tenancy is enforced (`FULQRUN_TENANCY=enforce`, or the gateway's `tenancy`
  argument); passed unchanged otherwise (single-tenant deployments keep working).
Health, metadata and the key-restricted control API are not inference and are never touched.

Not covered: Triton's gRPC port is served by Triton directly (no gateway), so with tenancy enforced the gRPC port
must not be reachable by tenants (bind it to loopback); by-id answers are not logged per entity (the backend's
internal request to `<model>` carries no ids).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from typing import Any

from fulqrun_ml.data.tenancy import TenantAccessError, check_org, scoped_id
from fulqrun_ml.serving.codec import ID_INPUT

ORG_HEADER = "X-Fulqrun-Org"
ORG_ENV = "FULQRUN_ORG"  # the SDK's default organisation (serving/client.py)
TENANCY_ENV = "FULQRUN_TENANCY"
HEADER_LENGTH = "Inference-Header-Content-Length"


class TenantRefused(Exception):
    """The request cannot be served for any organisation: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def tenancy_enforced(setting: bool | None = None) -> bool:
    """The explicit setting, else `$FULQRUN_TENANCY` == "enforce" (or "1")."""
    if setting is not None:
        return setting
    return os.environ.get(TENANCY_ENV, "").strip().lower() in ("enforce", "1", "true")


def scope_infer_request(
    model: str, body: bytes, headers: Mapping[str, str], enforce: bool
) -> tuple[bytes, str | None] | None:
    """None when the request passes unchanged; else (new body, new Inference-Header-Content-Length or None).
    Raises TenantRefused. `body` has already passed the gateway's structural check (`check_infer_request`)."""
    raw_org = headers.get(ORG_HEADER)
    if raw_org is None:
        if enforce:
            message = f"this server serves several organisations: send your organisation id in {ORG_HEADER}"
            raise TenantRefused(403, message)
        return None
    try:
        org = check_org(raw_org)
    except TenantAccessError as exc:
        raise TenantRefused(400, f"{ORG_HEADER}: {exc}") from None
    header_length = headers.get(HEADER_LENGTH)
    length = len(body) if header_length is None else int(header_length)
    request = json.loads(body[:length])
    binary = body[length:]
    parameters = request.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("entity_id"), str):
        parameters["entity_id"] = ",".join(scoped_id(org, e) for e in parameters["entity_id"].split(","))
    if model.endswith("_by_id"):
        binary = _scope_ids(request["inputs"], binary, org)
    head = json.dumps(request, separators=(",", ":")).encode()
    if header_length is None and not binary:
        return head, None
    return head + binary, str(len(head))


def _scope_ids(inputs: list[dict[str, Any]], binary: bytes, org: str) -> bytes:
    """Scope the `ids` tensor's elements in place (JSON) or in its binary segment; the other segments unchanged."""
    out, offset = bytearray(), 0
    for tensor in inputs:
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size")
        segment = b"" if size is None else binary[offset : offset + int(size)]
        offset += 0 if size is None else int(size)
        if tensor["name"] != ID_INPUT:
            out += segment
            continue
        if size is None:
            tensor["data"] = _scope_nested(tensor.get("data"), org)
            continue
        scoped = _encode_bytes([scoped_id(org, v.decode("utf-8", "replace")).encode() for v in _decode_bytes(segment)])
        parameters["binary_data_size"] = len(scoped)
        out += scoped
    return bytes(out + binary[offset:])


def _scope_nested(data: Any, org: str) -> Any:
    if isinstance(data, list):
        return [_scope_nested(item, org) for item in data]
    return scoped_id(org, data)


def _decode_bytes(segment: bytes) -> list[bytes]:
    """Triton's binary BYTES layout: per element a 4-byte little-endian length, then the bytes."""
    values, at = [], 0
    while at < len(segment):
        if at + 4 > len(segment):
            raise TenantRefused(400, f"input '{ID_INPUT}': binary data ends inside an element's length")
        (n,) = struct.unpack_from("<I", segment, at)
        if at + 4 + n > len(segment):
            raise TenantRefused(400, f"input '{ID_INPUT}': an element of {n} bytes runs past the binary data")
        values.append(segment[at + 4 : at + 4 + n])
        at += 4 + n
    return values


def _encode_bytes(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)
