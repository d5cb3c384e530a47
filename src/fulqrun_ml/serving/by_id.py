"""The Triton config of `<name>_by_id`: score entities by id, features read from the Redis online store.

Why a module of its own: the endpoint is a different kind of model from the ones `repository.py` derives
from a version's metadata. It takes one string input, `ids` [N], and no ONNX graph: its Python backend
(template serving/python_by_id/model.py) reads each id's features from Redis and calls the raw-record
endpoint `<name>` once per batch (BLS), so it returns exactly that endpoint's outputs, plus per row
`status` ("ok" | "stale" | "unknown" | "invalid") and `as_of` (the features' ISO time, "" when unknown).

What travels in the config: the target model and version (the feature view is chosen for them), the
store's URL and socket timeout, how often the registered views are re-read. Not a password: Triton shows
model configs to any client (GET /v2/models/<name>/config), so a URL carrying one is refused and the
backend reads it from the environment variable named by `redis_password_env` instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.codec import ID_INPUT, by_id_name
from fulqrun_ml.serving.repository import TensorSpec, TritonModelConfig, column_model_output, is_tensor_model
from fulqrun_ml.serving.tls import require_tls_url

STATUS_OUTPUT = "status"
AS_OF_OUTPUT = "as_of"
STATUSES = ("ok", "stale", "unknown", "invalid")
PASSWORD_ENV = "FULQRUN_REDIS_PASSWORD"


def checked_redis_url(url: str) -> str:
    """The URL as given, once it is known to be a redis URL without a password in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise FulqrunMLError(f"serving.by_id.redis_url must be a redis://, rediss:// or unix:// URL, got '{url}'")
    if parts.password:
        raise FulqrunMLError(
            f"serving.by_id.redis_url carries a password, which Triton would show to every client in the model "
            f"config: remove it from the URL and export {PASSWORD_ENV} for the server instead"
        )
    return require_tls_url(url, "serving.by_id.redis_url")  # rediss:// only when $FULQRUN_REQUIRE_TLS is set


def by_id_config(
    version: ModelVersion,
    redis_url: str,
    *,
    max_batch_size: int = 1024,
    max_queue_delay_microseconds: int = 200,
    preferred_batch_sizes: tuple[int, ...] = (),
    instance_count: int = 1,
    socket_timeout_s: float = 0.3,
    view_refresh_s: float = 10.0,
) -> TritonModelConfig:
    """`<name>_by_id` for a tabular version: the same batching as `<name>` (so one of its batches fits one
    request to `<name>`), the version's outputs plus `status` and `as_of`."""
    if is_tensor_model(version.metadata):
        raise FulqrunMLError(
            f"{version.name} takes tensor inputs: only tabular models (raw CRM columns) are served by id"
        )
    outputs = tuple(column_model_output(o) for o in version.metadata["outputs"])
    clashes = {STATUS_OUTPUT, AS_OF_OUTPUT} & {o.name for o in outputs}
    if clashes:
        raise FulqrunMLError(f"{version.name} already has an output named {sorted(clashes)}: cannot serve it by id")
    return TritonModelConfig(
        name=by_id_name(version.name),
        inputs=(TensorSpec(ID_INPUT, "string"),),
        outputs=(*outputs, TensorSpec(STATUS_OUTPUT, "string"), TensorSpec(AS_OF_OUTPUT, "string")),
        variant="python-by-id",
        max_batch_size=max_batch_size,
        max_queue_delay_microseconds=max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(preferred_batch_sizes),
        instance_count=instance_count,
        parameters={
            "target_model": version.name,
            "target_version": str(version.version),
            "redis_url": checked_redis_url(redis_url),
            "redis_password_env": PASSWORD_ENV,
            "socket_timeout_s": str(float(socket_timeout_s)),
            "view_refresh_s": str(float(view_refresh_s)),
        },
        version_files=(("feature_spec.json", "feature_spec.json"),),
    )
