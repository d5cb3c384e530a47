"""An HTTP gateway in front of Triton that answers malformed inference requests with 400, naming the problem.

Why: Triton 2.51's HTTP frontend (the binary in nvidia-pytriton) answers a body that is not JSON, an `inputs`
that is not a list, or a `data` array whose length disagrees with `shape` with HTTP 500, which tells clients and
load balancers "the server broke, retry" when the request is at fault; the C++ frontend cannot be changed here.
The gateway parses only the JSON header of `POST /v2/models/<m>[/versions/<v>]/infer` (with the binary tensor
extension, the first `Inference-Header-Content-Length` bytes), checks the structure and the element counts of
JSON-encoded tensors, and forwards every request that passes, byte for byte, to Triton on loopback. Everything
else (health, metadata, the key-restricted control API with its header) is proxied unchanged.

aiohttp (already installed with tritonclient's asyncio client) serves and forwards; the gateway runs on its own
event loop in a daemon thread so a synchronous `TritonServer` can own it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from typing import Any

import aiohttp
from aiohttp import web

from fulqrun_ml.errors import ServingError
from fulqrun_ml.serving.tenant_gateway import TenantRefused, scope_infer_request, tenancy_enforced

INFER_PATH = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
HEADER_LENGTH = "Inference-Header-Content-Length"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
# aiohttp's server decompresses request bodies, so a forwarded request drops its Content-Encoding; a response is
# passed through still compressed (auto_decompress=False), so it keeps its own.
REQUEST_DROP = HOP_BY_HOP | {"content-encoding"}
MAX_NESTING = 32


class BadRequest(ValueError):
    """The request is malformed; the message names the part (input, field) at fault."""


def check_infer_request(body: bytes, header_length: str | None) -> None:
    """Raise BadRequest when the KServe-v2 inference request cannot be valid; pass a well-formed one silently."""
    try:
        length = len(body) if header_length is None else int(header_length)
    except ValueError:
        raise BadRequest(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 <= length <= len(body):
        raise BadRequest(f"{HEADER_LENGTH} {length} is outside the body of {len(body)} bytes")
    try:
        request = json.loads(body[:length])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("request body must be a JSON object")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list")
    for position, tensor in enumerate(inputs):
        _check_tensor(tensor, position)


def _check_tensor(tensor: Any, position: int) -> None:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise BadRequest(f"inputs[{position}] must be an object with a string 'name'")
    name = tensor["name"]
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    if not isinstance(tensor.get("datatype"), str):
        raise BadRequest(f"input '{name}': 'datatype' must be a string")
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"input '{name}': 'parameters' must be an object")
    if "binary_data_size" in parameters or "shared_memory_region" in parameters:
        return  # the data is in the binary part or shared memory: Triton checks its size itself
    if "data" not in tensor:
        raise BadRequest(f"input '{name}': no 'data' (and no binary_data_size)")
    count = _count_elements(tensor["data"], name)
    expected = math.prod(shape)
    if count != expected:
        raise BadRequest(f"input '{name}': shape {shape} needs {expected} value(s), 'data' has {count}")


def _count_elements(data: Any, name: str) -> int:
    """Leaves of a (possibly nested) JSON array, iteratively: a hostile, deeply nested body cannot recurse us."""
    count, stack = 0, [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            if depth >= MAX_NESTING:
                raise BadRequest(f"input '{name}': 'data' is nested deeper than {MAX_NESTING} levels")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            raise BadRequest(f"input '{name}': 'data' holds an object, expected numbers, booleans or strings")
        else:
            count += 1
    return count


class InferenceGateway:
    """Listens on `host:port` and forwards to Triton's HTTP endpoint `upstream` ("127.0.0.1:8000")."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, tenancy: bool | None = None) -> None:
        self.upstream = upstream
        self.tenancy = tenancy_enforced(tenancy)  # the caller's organisation scopes ids (serving/tenant_gateway.py)
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fulqrun-gateway", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> InferenceGateway:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        except OSError as exc:
            self.stop()
            raise ServingError(f"gateway cannot listen on {self.host}:{self.port}: {exc}") from None
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        scoped = None
        if request.method == "POST" and INFER_PATH.match(request.path):
            try:
                check_infer_request(body, request.headers.get(HEADER_LENGTH))
                scoped = scope_infer_request(request.path.split("/")[3], body, request.headers, self.tenancy)
            except BadRequest as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except TenantRefused as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in REQUEST_DROP}
        if scoped is not None:  # ids rewritten to the caller's organisation: a new body (and binary header length)
            body = scoped[0]
            headers = {k: v for k, v in headers.items() if k.lower() != HEADER_LENGTH.lower()}
            if scoped[1] is not None:
                headers[HEADER_LENGTH] = scoped[1]
        url = f"http://{self.upstream}{request.path_qs}"
        try:
            async with self._session.request(request.method, url, data=body, headers=headers) as answer:
                payload = await answer.read()
                out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=answer.status, body=payload, headers=out)
        except aiohttp.ClientError as exc:
            return web.json_response({"error": f"model server unavailable: {type(exc).__name__}"}, status=503)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> InferenceGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
