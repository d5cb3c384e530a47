"""Client SDK over `tritonclient`: records (dicts or a DataFrame) in, typed predictions out.

Tensor-input models go through the same clients: `predict_forecast(history, calendar, series)` returns a
typed `Forecast` ([B, H, Q] quantiles with their levels), the sequence-fusion model takes its records plus
`sequences={"event_type": [B, L], ...}` in `predict` / `predict_detailed`, a close-timing survival model answers
`predict_close_timing(records)` with a typed `CloseTiming` (P(closed by each bin edge) [N, K] and expected days),
and `infer(arrays)` sends any named arrays and returns every output. Shapes are checked locally against the
server's model metadata.

Sync (`TritonPredictionClient`) and asyncio (`AsyncTritonPredictionClient`) clients, over HTTP or gRPC.
They learn input names and types from the server's model metadata, so they carry no feature code: the
preprocessing lives in the served graph. Records that cannot even be encoded (missing or unknown field,
text in a numeric field) raise FieldValidationError locally; value problems the server finds (NaN,
negative amounts, ...) come back as FieldValidationError too, parsed from the server's message.
Unavailable/overloaded servers are retried with exponential backoff; field errors never are.
Any plain tritonclient / KServe-v2 client works against the same server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import FieldValidationError, ServingError

FIELD_ERROR = re.compile(r"field '(?P<field>[^']+)': (?P<reason>.+)")
# Triton core refuses some malformed requests before the backend sees them; its messages name the input too.
TRITON_FIELD_ERRORS = (
    (FIELD_ERROR, None),
    (re.compile(r"unexpected shape for input '(?P<field>[^']+)' for model '[^']*'\. (?P<reason>Expected [^.]+)"), None),
    (re.compile(r"input '(?P<field>[^']+)' data-type is (?P<reason>'[^']+', but model '[^']*' expects '[^']+')"), None),
    (re.compile(r"missing required input\(s\) \['(?P<field>[^']+)'"), "missing input"),
    (re.compile(r"unexpected inference input '(?P<field>[^']+)'"), "unknown input"),
)
NUMPY_DTYPES = {"FP32": np.float32, "INT64": np.int64, "BYTES": np.object_}
# Worth retrying: the server (or a model being reloaded) is briefly unavailable or overloaded.
RETRYABLE = ("unavailable", "503", "429", "502", "504", "connection", "timed out", "not ready", "overloaded")
Protocol = Literal["http", "grpc"]
Records = pd.DataFrame | Iterable[Mapping[str, Any]]


class ServerUnavailableError(ServingError):
    """The server could not be reached or stayed overloaded after every retry."""


@dataclass(frozen=True)
class Prediction:
    """One record's answer: calibrated probability, which model version gave it, and optional reasons."""

    probability: float
    model_name: str
    model_version: str
    reasons: dict[str, list[dict[str, Any]]] | None = field(default=None)


@dataclass(frozen=True)
class Forecast:
    """A forecaster's answer: `quantiles[b, h, q]` in revenue units for window b, step h, level `levels[q]`."""

    quantiles: np.ndarray
    levels: tuple[float, ...]
    model_name: str
    model_version: str


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def delays(self) -> list[float]:
        return [min(self.max_backoff_s, self.initial_backoff_s * 2**i) for i in range(self.attempts - 1)]


def _message(exc: Exception) -> str:
    return exc.message() if callable(getattr(exc, "message", None)) else str(exc)


def field_error(message: str) -> FieldValidationError | None:
    """The field a server error names (ours: "field 'x': ..."; Triton core's shape/dtype/missing/unknown input
    messages), as a FieldValidationError; None when it names none."""
    for pattern, fixed_reason in TRITON_FIELD_ERRORS:
        match = pattern.search(message)
        if match:
            return FieldValidationError(match["field"], fixed_reason or match["reason"].strip())
    return None


def is_retryable(exc: Exception) -> bool:
    if isinstance(exc, InferenceServerException):
        text = f"{exc.status()} {_message(exc)}".lower()
        return field_error(_message(exc) or "") is None and any(m in text for m in RETRYABLE)
    return isinstance(exc, (ConnectionError, OSError, TimeoutError))


def raise_for_server_error(exc: Exception) -> None:
    """Map a server error to FieldValidationError when it names a field, else ServingError."""
    message = _message(exc)
    error = field_error(message or "")
    if error is not None:
        raise error from None
    if is_retryable(exc):
        raise ServerUnavailableError(f"Triton unavailable: {message}") from None
    raise ServingError(f"Triton error: {message}") from None


def record_columns(records: Records) -> dict[str, np.ndarray]:
    """Column arrays from a DataFrame or from records (without pandas, which costs ~1 ms per call)."""
    if isinstance(records, pd.DataFrame):
        return {str(c): records[c].to_numpy() for c in records.columns}
    rows = list(records)
    names = list(dict.fromkeys(k for row in rows for k in row))
    missing = object()
    columns = {}
    for name in names:
        values = [row.get(name, missing) for row in rows]
        if any(v is missing for v in values):
            raise FieldValidationError(name, "missing in some records")
        columns[name] = np.array(values, dtype=object if any(isinstance(v, str) for v in values) else None)
    return columns


@dataclass
class _ModelInterface:
    """What the server says the model takes and returns."""

    inputs: list[tuple[str, str]]
    outputs: list[str]
    max_batch_size: int
    # Full shapes from the server's metadata, batch axis first (-1 = variable); [-1, 1] is one raw column.
    shapes: dict[str, list[int]] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)

    def is_column(self, name: str) -> bool:
        return self.shapes.get(name, [-1, 1]) == [-1, 1]

    def encode(self, lib: Any, columns: Mapping[str, np.ndarray], model_name: str) -> list[Any]:
        names = {name for name, _ in self.inputs}
        extra = [c for c in columns if c not in names]
        if extra:
            raise FieldValidationError(extra[0], f"unknown field for model '{model_name}'")
        encoded = []
        rows: tuple[str, int] | None = None
        for name, datatype in self.inputs:
            if name not in columns:
                raise FieldValidationError(name, "missing field")
            array = self._array(name, datatype, np.asarray(columns[name]))
            if rows is None:
                rows = (name, array.shape[0])
            elif array.shape[0] != rows[1]:
                raise FieldValidationError(name, f"has {array.shape[0]} rows, field '{rows[0]}' has {rows[1]}")
            tensor = lib.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            encoded.append(tensor)
        return encoded

    def _array(self, name: str, datatype: str, values: np.ndarray) -> np.ndarray:
        """One input as the server expects it: a column [rows, 1], or a tensor of the metadata's shape."""
        if datatype == "BYTES":
            if pd.isna(values).any():
                raise FieldValidationError(name, "missing value")
            array = values.astype(str).astype(np.object_)
        else:
            if values.dtype.kind == "b":
                raise FieldValidationError(name, f"expected a number ({datatype}), got true/false")
            if values.dtype.kind not in "iuf":
                try:
                    values = np.asarray(pd.to_numeric(values.ravel(), errors="raise")).reshape(values.shape)
                except (ValueError, TypeError):
                    raise FieldValidationError(name, f"expected a number ({datatype})") from None
            if datatype == "INT64" and values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
                raise FieldValidationError(name, "expected whole numbers (INT64 indices)")
            array = np.asarray(values, dtype=NUMPY_DTYPES[datatype])
        if self.is_column(name):
            if array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
                raise FieldValidationError(name, f"expected one value per record, got shape {list(array.shape)}")
            return array.reshape(-1, 1)
        expected = self.shapes[name]
        fits = array.ndim == len(expected) and all(e in (-1, a) for e, a in zip(expected, array.shape, strict=True))
        if not fits:
            raise FieldValidationError(name, f"expected shape {expected} (-1: any size), got {list(array.shape)}")
        return array

    def chunks(self, columns: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        n_rows = len(next(iter(columns.values()))) if columns else 0
        step = self.max_batch_size
        return [{k: v[start : start + step] for k, v in columns.items()} for start in range(0, n_rows, step)]


def _interface(meta: Mapping[str, Any], config: Mapping[str, Any]) -> _ModelInterface:
    return _ModelInterface(
        inputs=[(i["name"], i["datatype"]) for i in meta["inputs"]],
        outputs=[o["name"] for o in meta["outputs"]],
        max_batch_size=int(config.get("max_batch_size", 0)) or 1024,
        shapes={i["name"]: [int(d) for d in i.get("shape", [-1, 1])] for i in meta["inputs"]},
        parameters={k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()},
    )


def _predictions(result: Any, outputs: list[str], protocol: Protocol, default_name: str) -> list[Prediction]:
    if SURVIVAL_OUTPUTS[0] in outputs:  # one probability per record does not describe a curve
        raise ServingError(f"model '{default_name}' is a survival model: use predict_close_timing()")
    name, version = _served_by(result, protocol, default_name)
    probabilities = result.as_numpy(outputs[0]).reshape(-1)
    reasons = result.as_numpy("reasons").reshape(-1) if "reasons" in outputs else None
    return [
        Prediction(
            probability=float(p),
            model_name=name,
            model_version=version,
            reasons=json.loads(reasons[i]) if reasons is not None else None,
        )
        for i, p in enumerate(probabilities)
    ]


def _served_by(result: Any, protocol: Protocol, default_name: str) -> tuple[str, str]:
    """(model name, model version) the server says answered."""
    response = result.get_response() if protocol == "http" else result.get_response(as_json=True)
    return response.get("model_name", default_name), str(response.get("model_version", ""))


def _with_sequences(records: Records, sequences: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Record columns plus per-record tensors (the sequence model's [rows, length] event arrays)."""
    columns = record_columns(records)
    for name, array in (sequences or {}).items():
        if name in columns:
            raise FieldValidationError(name, "given both as a record field and as a sequence array")
        columns[name] = np.asarray(array)
    return columns


def _concatenated(results: list[Any], outputs: list[str]) -> dict[str, np.ndarray]:
    if not results:  # no rows were sent
        return {name: np.empty((0,), dtype=np.float32) for name in outputs}
    return {name: np.concatenate([r.as_numpy(name) for r in results]) for name in outputs}


def _forecast(
    interface: _ModelInterface, arrays: dict[str, np.ndarray], served_by: tuple[str, str], output: str
) -> Forecast:
    levels = tuple(json.loads(interface.parameters.get("quantiles", "[]")))
    return Forecast(quantiles=arrays[output], levels=levels, model_name=served_by[0], model_version=served_by[1])


@dataclass(frozen=True)
class CloseTiming:
    """A survival model's answer: `close_probability[n, k]` = P(record n's deal is closed by `bin_edges[k + 1]`
    days), non-decreasing in k, and `expected_days[n]` = expected days to close within the horizon (a deal
    still open then counts as the horizon)."""

    close_probability: np.ndarray
    expected_days: np.ndarray
    bin_edges: tuple[float, ...]
    model_name: str
    model_version: str


SURVIVAL_OUTPUTS = ("close_probability", "expected_days")


def _close_timing(interface: _ModelInterface, results: list[Any], protocol: Protocol, name: str) -> CloseTiming:
    if not set(SURVIVAL_OUTPUTS) <= set(interface.outputs):
        raise ServingError(f"model '{name}' is not a survival model (outputs {interface.outputs}); use predict()")
    arrays = _concatenated(results, list(SURVIVAL_OUTPUTS))
    edges = tuple(json.loads(interface.parameters.get("bin_edges", "[]")))
    served_by = _served_by(results[0], protocol, name) if results else (name, "")
    return CloseTiming(
        close_probability=arrays["close_probability"].reshape(-1, max(len(edges) - 1, 1)),
        expected_days=arrays["expected_days"].reshape(-1),
        bin_edges=edges,
        model_name=served_by[0],
        model_version=served_by[1],
    )


def _forecast_inputs(history: Any, calendar: Any, series: Any) -> dict[str, np.ndarray]:
    return {"history": np.asarray(history), "calendar": np.asarray(calendar), "series": np.asarray(series)}


class TritonPredictionClient:
    """Blocking client. `concurrency` sizes the HTTP connection pool (gRPC multiplexes one channel)."""

    def __init__(
        self,
        url: str,
        model_name: str,
        protocol: Protocol = "http",
        model_version: str = "",
        retry: RetryPolicy | None = None,
        concurrency: int = 1,
        timeout_s: float = 30.0,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.protocol = protocol
        self.retry = retry or RetryPolicy()
        self._lib = httpclient if protocol == "http" else grpcclient
        if protocol == "http":
            self._client = httpclient.InferenceServerClient(
                url=url, concurrency=concurrency, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self._client = grpcclient.InferenceServerClient(url=url)
        self._interface: _ModelInterface | None = None

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        delays = self.retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                return fn(*args, **kwargs)
            except (InferenceServerException, ConnectionError, OSError, TimeoutError) as exc:
                if attempt == len(delays) or not is_retryable(exc):
                    raise_for_server_error(exc)
                time.sleep(delays[attempt])
        raise AssertionError("unreachable")

    @property
    def interface(self) -> _ModelInterface:
        if self._interface is None:
            as_json = {} if self.protocol == "http" else {"as_json": True}
            meta = self._call(self._client.get_model_metadata, self.model_name, self.model_version, **as_json)
            config = self._call(self._client.get_model_config, self.model_name, self.model_version, **as_json)
            self._interface = _interface(meta, config if self.protocol == "http" else config["config"])
        return self._interface

    @property
    def inputs(self) -> list[tuple[str, str]]:
        return self.interface.inputs

    def _infer_chunks(self, columns: Mapping[str, np.ndarray], model_version: str | None) -> list[Any]:
        """One server call per max-batch-size chunk, each validated locally first and retried if unavailable."""
        interface = self.interface
        version = self.model_version if model_version is None else model_version
        outputs = [self._lib.InferRequestedOutput(name) for name in interface.outputs]
        results = []
        for chunk in interface.chunks(columns):
            inputs = interface.encode(self._lib, chunk, self.model_name)
            results.append(
                self._call(self._client.infer, self.model_name, inputs, model_version=version, outputs=outputs)
            )
        return results

    def predict_detailed(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> list[Prediction]:
        """Typed predictions in record order (chunked to the server's max batch size). `sequences`: the
        sequence model's per-record event arrays ({"event_type": [rows, length], ...})."""
        results = self._infer_chunks(_with_sequences(records, sequences), model_version)
        outputs = self.interface.outputs
        return [p for r in results for p in _predictions(r, outputs, self.protocol, self.model_name)]

    def predict(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Probabilities only, as a float32 array in record order."""
        predictions = self.predict_detailed(records, model_version, sequences)
        return np.array([p.probability for p in predictions], dtype=np.float32)

    def infer(self, arrays: Mapping[str, Any], model_version: str | None = None) -> dict[str, np.ndarray]:
        """Any model, raw: named input arrays (batch axis first) in, every output array out."""
        results = self._infer_chunks({k: np.asarray(v) for k, v in arrays.items()}, model_version)
        return _concatenated(results, self.interface.outputs)

    def predict_close_timing(self, records: Records, model_version: str | None = None) -> CloseTiming:
        """A close-timing survival model's curves for raw CRM records, in record order."""
        results = self._infer_chunks(record_columns(records), model_version)
        return _close_timing(self.interface, results, self.protocol, self.model_name)

    def predict_forecast(self, history: Any, calendar: Any, series: Any, model_version: str | None = None) -> Forecast:
        """Revenue quantiles: history [B, L], calendar [B, H, C] (`windows.future_calendar`), series [B]
        (series_index.json position + 1, 0 for an unseen series) -> Forecast with quantiles [B, H, Q]."""
        results = self._infer_chunks(_forecast_inputs(history, calendar, series), model_version)
        arrays = _concatenated(results, self.interface.outputs)
        served_by = _served_by(results[0], self.protocol, self.model_name) if results else (self.model_name, "")
        return _forecast(self.interface, arrays, served_by, self.interface.outputs[0])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonPredictionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTritonPredictionClient:
    """asyncio client for services that score many deals concurrently (one pooled connection set)."""

    def __init__(
        self,
        url: str,
        model_name: str,
        protocol: Protocol = "grpc",
        model_version: str = "",
        retry: RetryPolicy | None = None,
        concurrency: int = 64,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.protocol = protocol
        self.retry = retry or RetryPolicy()
        self._lib = httpaio if protocol == "http" else grpcaio
        if protocol == "http":
            self._client = httpaio.InferenceServerClient(url=url, conn_limit=concurrency)
        else:
            self._client = grpcaio.InferenceServerClient(url=url)
        self._interface: _ModelInterface | None = None

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        delays = self.retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                return await fn(*args, **kwargs)
            except (InferenceServerException, ConnectionError, OSError, TimeoutError) as exc:
                if attempt == len(delays) or not is_retryable(exc):
                    raise_for_server_error(exc)
                await asyncio.sleep(delays[attempt])
        raise AssertionError("unreachable")

    async def interface(self) -> _ModelInterface:
        if self._interface is None:
            as_json = {} if self.protocol == "http" else {"as_json": True}
            meta = await self._call(self._client.get_model_metadata, self.model_name, self.model_version, **as_json)
            config = await self._call(self._client.get_model_config, self.model_name, self.model_version, **as_json)
            self._interface = _interface(meta, config if self.protocol == "http" else config["config"])
        return self._interface

    async def _infer_chunks(self, columns: Mapping[str, np.ndarray], model_version: str | None) -> list[Any]:
        interface = await self.interface()
        version = self.model_version if model_version is None else model_version
        outputs = [self._lib.InferRequestedOutput(name) for name in interface.outputs]
        results = []
        for chunk in interface.chunks(columns):
            inputs = interface.encode(self._lib, chunk, self.model_name)
            results.append(
                await self._call(self._client.infer, self.model_name, inputs, model_version=version, outputs=outputs)
            )
        return results

    async def predict_detailed(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> list[Prediction]:
        results = await self._infer_chunks(_with_sequences(records, sequences), model_version)
        outputs = (await self.interface()).outputs
        return [p for r in results for p in _predictions(r, outputs, self.protocol, self.model_name)]

    async def predict(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        predictions = await self.predict_detailed(records, model_version, sequences)
        return np.array([p.probability for p in predictions], dtype=np.float32)

    async def infer(self, arrays: Mapping[str, Any], model_version: str | None = None) -> dict[str, np.ndarray]:
        results = await self._infer_chunks({k: np.asarray(v) for k, v in arrays.items()}, model_version)
        return _concatenated(results, (await self.interface()).outputs)

    async def predict_close_timing(self, records: Records, model_version: str | None = None) -> CloseTiming:
        """A close-timing survival model's curves for raw CRM records, in record order."""
        results = await self._infer_chunks(record_columns(records), model_version)
        return _close_timing(await self.interface(), results, self.protocol, self.model_name)

    async def predict_forecast(
        self, history: Any, calendar: Any, series: Any, model_version: str | None = None
    ) -> Forecast:
        interface = await self.interface()
        results = await self._infer_chunks(_forecast_inputs(history, calendar, series), model_version)
        arrays = _concatenated(results, interface.outputs)
        served_by = _served_by(results[0], self.protocol, self.model_name) if results else (self.model_name, "")
        return _forecast(interface, arrays, served_by, interface.outputs[0])

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncTritonPredictionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
