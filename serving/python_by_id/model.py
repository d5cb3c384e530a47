"""Triton Python-backend model `<model>_by_id`: entity ids in, the raw-record endpoint's answers out.

Why it exists: a client that knows only an opportunity or lead id can ask "score X now" without sending
every raw CRM field. The features come from the Redis online store (the layout in
src/fulqrun_ml/online/INTERFACE.md), written by the same feature definitions that training uses.

Why BLS and not a second copy of the graph: every execute() batch is answered by ONE request to the
raw-record endpoint `<model>` (all usable rows of all requests concatenated), so the outputs are that
endpoint's outputs by construction, with its validation, its version and its dynamic batching.

Per row (never failing the batch): `status` is "ok", "stale" (features older than the view's TTL: scored
and flagged), "unknown" (no features for that id: NaN outputs, empty `as_of`) or "invalid" (the stored row
is incomplete or breaks the model's input rules, which would make the raw endpoint refuse the whole batch:
NaN outputs). `as_of` is the features' ISO time. When Redis is down or slow (short socket timeouts, one
retry) the request gets an error naming the store's host:port (never its password); the model stays loaded
and answers again once Redis is back.

Which feature view: HASH `fq:views`, the newest view whose `models` names this model (and version),
else the newest whose features are exactly this model's inputs; chosen at initialize() when Redis is up,
else lazily, and re-read every `view_refresh_s` so a newly registered view is picked up.

Runs inside Triton's Python stub: imports only numpy, redis and the stdlib (no fulqrun_ml).
"""

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import redis
import triton_python_backend_utils as pb_utils
from redis.backoff import NoBackoff
from redis.retry import Retry

VIEWS_KEY = "fq:views"
AS_OF_FIELD = "_as_of"
OK, STALE, UNKNOWN, INVALID = b"ok", b"stale", b"unknown", b"invalid"
EXTRA_OUTPUTS = ("status", "as_of")


class StoreUnavailable(Exception):
    """Redis could not be reached or did not answer in time."""


class NoView(Exception):
    """No registered feature view can feed this model."""


def triton_error(message, code_name):
    code = getattr(pb_utils.TritonError, code_name, None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


def failed(message, code_name="INTERNAL"):
    return pb_utils.InferenceResponse(output_tensors=[], error=triton_error(message, code_name))


def store_location(url):
    """host:port (or the socket path) of a redis URL, without user or password, for error messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def iso_time(epoch_ms):
    return datetime.fromtimestamp(epoch_ms / 1000.0, UTC).isoformat(timespec="milliseconds").encode()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        spec = json.loads((Path(args["model_repository"]) / args["model_version"] / "feature_spec.json").read_text())
        self.numeric = [f["name"] for f in spec["numeric"]]
        self.categorical = [f["name"] for f in spec["categorical"]]
        self.names = self.numeric + self.categorical
        self.fields = [*self.names, AS_OF_FIELD]
        self.n_numeric = len(self.numeric)
        self.nan_allowed = np.array([bool(f.get("impute_missing")) for f in spec["numeric"]], dtype=bool)
        self.non_negative = np.array([bool(f.get("log1p")) for f in spec["numeric"]], dtype=bool)
        self.target = params["target_model"]
        self.target_version = int(params.get("target_version", "-1"))
        self.max_rows = int(config.get("max_batch_size", 0)) or 1024
        self.max_id_bytes = int(params.get("max_id_bytes", "1024"))
        declared = [o for o in config["output"] if o["name"] not in EXTRA_OUTPUTS]
        self.outputs = [o["name"] for o in declared]
        # Row width of each output (a curve has K values), so unscored rows are NaN of the declared shape.
        self.widths = [int(np.prod(o["dims"])) if all(int(d) > 0 for d in o["dims"]) else 1 for o in declared]
        timeout = float(params.get("socket_timeout_s", "0.3"))
        self.location = store_location(params["redis_url"])
        # One pool per instance; short timeouts and a single immediate retry (which also replaces a pooled
        # connection that died with a restarted server), so a dead or hung Redis costs < 1 s, never a hang.
        # The password never sits in the config (clients can read it): it comes from the environment.
        password = os.environ.get(params.get("redis_password_env", "FULQRUN_REDIS_PASSWORD")) or None
        self.pool = redis.ConnectionPool.from_url(
            params["redis_url"],
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self.redis = redis.Redis(connection_pool=self.pool)
        self.refresh_s = float(params.get("view_refresh_s", "10"))
        self.view = None
        self.prefix = b""
        self.ttl_ms = float("inf")
        self.checked_at = float("-inf")
        # The store may come up later: the view is looked up again on the first request.
        with contextlib.suppress(StoreUnavailable, NoView):
            self._ensure_view()

    def _store(self, what, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailable(
                f"online store unavailable at {self.location}: {what} failed: {type(exc).__name__}: {exc}"
            ) from None

    def _ensure_view(self):
        """Pick (or re-pick, every `refresh_s`) the feature view this model reads."""
        now = time.monotonic()
        if self.view is not None and now - self.checked_at < self.refresh_s:
            return
        try:
            registered = self._store("reading the feature views", self.redis.hgetall, VIEWS_KEY)
        except StoreUnavailable:
            if self.view is None:
                raise
            registered = None  # keep the view we have; reading features will report the outage
        if registered is not None:
            view = self._best_view(registered)
            if view is None and self.view is None:
                raise NoView(
                    f"no feature view in the online store at {self.location} feeds {self.target} "
                    f"v{self.target_version} (features {', '.join(self.names)}): materialise one first "
                    "(`fulqrun-ml online materialise`)"
                )
            if view is not None:
                self.view = view
                self.prefix = view["key_prefix"]
                self.ttl_ms = float(view.get("ttl_seconds", float("inf"))) * 1000.0
        self.checked_at = now

    def _best_view(self, registered):
        """The newest view naming this model (and version), else the newest with exactly its features."""
        wanted = set(self.names)
        candidates = []
        for blob in registered.values():
            try:
                view = json.loads(blob)
                features = set(view["features"])
                view["key_prefix"] = f"fq:fv:{view['name']}:{view['version']}:".encode()
            except (ValueError, KeyError, TypeError):
                continue  # a malformed entry is skipped, not fatal
            if not wanted <= features:
                continue
            models = [m for m in view.get("models") or [] if isinstance(m, dict)]
            names_us = any(
                m.get("model") == self.target
                and (self.target_version < 0 or m.get("version") in (None, self.target_version))
                for m in models
            )
            rank = 2 if names_us else 1 if features == wanted else 0
            if rank:
                candidates.append((rank, int(view.get("created_ms") or 0), view))
        return max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None

    def _read(self, ids):
        """HMGET every id's fields in one pipelined round trip; None for ids not worth a lookup."""
        lookups = [i for i, entity in enumerate(ids) if 0 < len(entity) <= self.max_id_bytes]
        rows = [None] * len(ids)
        if lookups:
            pipe = self.redis.pipeline(transaction=False)
            for i in lookups:
                pipe.hmget(self.prefix + ids[i], self.fields)
            answers = self._store("reading features", pipe.execute, raise_on_error=False)
            for i, answer in zip(lookups, answers, strict=True):
                rows[i] = answer
        return rows

    def _decode(self, rows):
        """(status [n] bytes, as_of [n] bytes, usable row indices, numeric [k, n_numeric] f32, categorical)."""
        n = len(rows)
        status = np.full(n, UNKNOWN, dtype=object)
        as_of = np.full(n, b"", dtype=object)
        usable, numeric, categorical = [], [], []
        now_ms = time.time() * 1000.0
        for i, values in enumerate(rows):
            if not isinstance(values, list) or all(v is None for v in values):
                if isinstance(values, Exception):
                    status[i] = INVALID  # e.g. WRONGTYPE: something else lives under that key
                continue
            try:
                nums = np.array([float(v) for v in values[: self.n_numeric]], dtype=np.float64)
                cats = values[self.n_numeric : -1]
                for v in cats:
                    v.decode()  # raises on None (AttributeError) or bad UTF-8 (UnicodeDecodeError)
                stamp = int(float(values[-1]))
            except (TypeError, ValueError, AttributeError, UnicodeDecodeError, OverflowError):
                status[i] = INVALID
                continue
            if (
                np.isinf(nums).any()
                or (np.isnan(nums) & ~self.nan_allowed).any()
                or (nums[self.non_negative] < 0).any()
            ):
                status[i] = INVALID
                continue
            status[i] = STALE if now_ms - stamp > self.ttl_ms else OK
            as_of[i] = iso_time(stamp)
            usable.append(i)
            numeric.append(nums)
            categorical.append(cats)
        if not usable:
            return status, as_of, usable, None, None
        return status, as_of, usable, np.array(numeric, dtype=np.float32), np.array(categorical, dtype=object)

    def _score(self, numeric, categorical):
        """The raw-record endpoint's outputs for these rows, one BLS request per max-batch chunk."""
        parts = []
        for start in range(0, len(numeric), self.max_rows):
            num = np.ascontiguousarray(numeric[start : start + self.max_rows].T)
            cat = categorical[start : start + self.max_rows].T.copy()
            inputs = [pb_utils.Tensor(name, num[j].reshape(-1, 1)) for j, name in enumerate(self.numeric)]
            inputs += [pb_utils.Tensor(name, cat[j].reshape(-1, 1)) for j, name in enumerate(self.categorical)]
            request = pb_utils.InferenceRequest(
                model_name=self.target,
                model_version=self.target_version,
                requested_output_names=self.outputs,
                inputs=inputs,
            )
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"the raw-record endpoint {self.target} answered: {response.error().message()}")
            parts.append([pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in self.outputs])
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.outputs))]

    def execute(self, requests):
        responses = [None] * len(requests)
        batch = []  # (request index, ids)
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, "ids")
            ids = tensor.as_numpy() if tensor is not None else None
            if ids is None or ids.ndim != 2 or ids.shape[1] != 1:
                shape = "missing" if ids is None else f"shape {list(ids.shape)}"
                responses[i] = failed(f"field 'ids': expected shape [batch, 1], got {shape}", "INVALID_ARG")
                continue
            batch.append((i, [v if isinstance(v, bytes) else str(v).encode() for v in ids.ravel()]))
        if not batch:
            return responses
        try:
            self._ensure_view()
            ids = [entity for _, group in batch for entity in group]
            status, as_of, usable, numeric, categorical = self._decode(self._read(ids))
            results = [np.full((len(ids), width), np.nan, dtype=np.float32) for width in self.widths]
            if usable:
                scored = [s.reshape(len(usable), -1) for s in self._score(numeric, categorical)]
                results = [np.full((len(ids), s.shape[1]), np.nan, dtype=np.float32) for s in scored]
                for full, part in zip(results, scored, strict=True):
                    full[usable] = part
        except StoreUnavailable as exc:
            return self._fail_rest(responses, batch, str(exc), "UNAVAILABLE")
        except NoView as exc:
            return self._fail_rest(responses, batch, str(exc), "NOT_FOUND")
        except Exception as exc:  # never crash the stub: every caller learns what failed
            return self._fail_rest(responses, batch, f"by-id scoring failed: {type(exc).__name__}: {exc}")
        start = 0
        for i, group in batch:
            end = start + len(group)
            tensors = [pb_utils.Tensor(name, r[start:end]) for name, r in zip(self.outputs, results, strict=True)]
            tensors.append(pb_utils.Tensor("status", status[start:end].reshape(-1, 1)))
            tensors.append(pb_utils.Tensor("as_of", as_of[start:end].reshape(-1, 1)))
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            start = end
        return responses

    @staticmethod
    def _fail_rest(responses, batch, message, code_name="INTERNAL"):
        for i, _ in batch:
            responses[i] = failed(message, code_name)
        return responses

    def finalize(self):
        self.pool.disconnect()
