"""Who may change what Triton serves: the repository / model-control API behind a key header.

Why: Triton's HTTP and gRPC endpoints answer `POST /v2/repository/models/<m>/unload` to anyone who can reach the
port, so one anonymous request took a production model offline while `/v2/health/ready` still said 200. Triton
(2.51, the binary in nvidia-pytriton) restricts API groups itself with `--http-restricted-api` /
`--grpc-restricted-protocol=<apis>:<header>=<value>`: a request in a restricted group without the header gets
an error and changes nothing. We restrict the groups that change or expose server state (model repository and
control, shared memory, tracing, logging, statistics) and leave health, metadata, config and inference open.

The key comes from the environment (`FULQRUN_TRITON_CONTROL_KEY`); without it, from a key file inside the model
repository (`.control_key`, created once with mode 0600, so only the serving user reads it), which a
`fulqrun-ml serve` and a later `fulqrun-ml models promote` in another process share; with neither (no
repository given) each process draws a random key. The key is never logged: Triton
gets it on its command line (visible to local users through /proc on the serving host; Triton 2.51 has no file
option), and `redacted_command` is what our logs and errors show.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tritonclient.http as httpclient

CONTROL_KEY_ENV = "FULQRUN_TRITON_CONTROL_KEY"
KEY_FILE = ".control_key"
CONTROL_HEADER = "fulqrun-control-key"  # lower case: gRPC metadata keys must be; Triton reserves "triton-"
RESTRICTED_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
_process_key: str | None = None


def control_key(repository: Path | None = None) -> str:
    """The key model-control requests must carry: $FULQRUN_TRITON_CONTROL_KEY, else the repository's key file,
    else one random key per process."""
    global _process_key
    configured = os.environ.get(CONTROL_KEY_ENV, "").strip()
    if configured:
        return configured
    if repository is not None:
        return _repository_key(Path(repository))
    if _process_key is None:
        _process_key = secrets.token_urlsafe(32)
    return _process_key


def _repository_key(repository: Path) -> str:
    """Read `<repository>/.control_key`, creating it owner-only (O_EXCL: two starters agree on one key)."""
    path = repository / KEY_FILE
    repository.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    key = path.read_text().strip()
    if not key:  # a concurrent creator has not written yet, or the file was emptied: never accept an empty key
        raise OSError(f"control key file {path} is empty")
    return key


def control_headers(key: str | None = None) -> dict[str, str]:
    return {CONTROL_HEADER: key or control_key()}


def restricted_api_flags(key: str, apis: Sequence[str] = RESTRICTED_APIS) -> list[str]:
    """tritonserver flags that put `apis` behind `CONTROL_HEADER: key` on HTTP and gRPC."""
    rule = f"{','.join(apis)}:{CONTROL_HEADER}={key}"
    return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]


def redacted_command(command: Sequence[str], key: str) -> list[str]:
    """The command with the key replaced, for logs and error messages."""
    return [part.replace(key, "***") for part in command]


class KeyedHTTPClient(httpclient.InferenceServerClient):
    """tritonclient's HTTP client that sends the control header on every request.

    Why a subclass: every model-control call (`load_model`, `unload_model`, `get_model_repository_index`,
    statistics) would otherwise need `headers=` at each call site, and one forgotten call site is a refusal in
    production; `_get`/`_post` are the two places every request of this client passes through."""

    def __init__(self, url: str, key: str | None = None, **kwargs: Any) -> None:
        super().__init__(url=url, **kwargs)
        self._control_headers = control_headers(key)

    def _get(self, request_uri: str, headers: Any, query_params: Any) -> Any:
        return super()._get(request_uri, {**(headers or {}), **self._control_headers}, query_params)

    def _post(self, request_uri: str, request_body: Any, headers: Any, query_params: Any) -> Any:
        return super()._post(request_uri, request_body, {**(headers or {}), **self._control_headers}, query_params)
