"""What goes over the wire between our clients and Triton: typed answers, request encoding, error mapping.

Why a module of its own: the blocking and the asyncio client (`client.py`) share every byte of it, and
`control.py` needs the typed `Prediction` without a client. Encoding checks a request against the server's
model metadata before it is sent (a missing or unknown field, text in a numeric field, a wrong shape raise
FieldValidationError locally); decoding turns Triton's answers into `Prediction`, `CloseTiming` and
`Forecast`; server errors that name a field become FieldValidationError, unavailable or overloaded servers
ServerUnavailableError (the clients retry those), anything else ServingError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import FieldValidationError, ServingError
from fulqrun_ml.serving.packed import PACKED_CATEGORICAL, PACKED_NUMERIC, PackedColumns, columns_from_parameters

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
Layout = Literal["packed", "named"]  # packed: two tensors (serving/packed.py); named: one tensor per field
Records = pd.DataFrame | Iterable[Mapping[str, Any]]


class ServerUnavailableError(ServingError):
    """The server could not be reached or stayed overloaded after every retry."""


class OnlineStoreUnavailableError(ServerUnavailableError):
    """`<model>_by_id` could not read the Redis online store (down or timed out) after every retry; the
    server itself is up. The message names the store's host:port."""


ONLINE_STORE_DOWN = "online store unavailable"
BY_ID_SUFFIX = "_by_id"
ID_INPUT = "ids"


def by_id_name(model: str) -> str:
    """`deal_win` -> `deal_win_by_id`, the endpoint that scores by entity id (a name with the suffix is kept)."""
    return model if model.endswith(BY_ID_SUFFIX) else f"{model}{BY_ID_SUFFIX}"


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
    if ONLINE_STORE_DOWN in (message or ""):
        raise OnlineStoreUnavailableError(message[message.index(ONLINE_STORE_DOWN) :]) from None
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
class ModelInterface:
    """What the server says the model takes and returns."""

    inputs: list[tuple[str, str]]
    outputs: list[str]
    max_batch_size: int
    # Full shapes from the server's metadata, batch axis first (-1 = variable); [-1, 1] is one raw column.
    shapes: dict[str, list[int]] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    # The packed layout's column order when the model publishes one (raw-record models); `inputs` then lists
    # the named fields only, and `encode` packs them.
    packed: PackedColumns | None = None

    def is_column(self, name: str) -> bool:
        return self.shapes.get(name, [-1, 1]) == [-1, 1]

    def encode(self, lib: Any, columns: Mapping[str, np.ndarray], model_name: str, layout: Layout = "packed") -> list:
        """Validated input tensors for one chunk: packed (two tensors, serving/packed.py) when the model publishes
        that layout and `layout` asks for it, else one tensor per input. Errors name the field either way."""
        names = {name for name, _ in self.inputs}
        extra = [c for c in columns if c not in names]
        if extra:
            raise FieldValidationError(extra[0], f"unknown field for model '{model_name}'")
        arrays: dict[str, tuple[np.ndarray, str]] = {}
        rows: tuple[str, int] | None = None
        for name, datatype in self.inputs:
            if name not in columns:
                raise FieldValidationError(name, "missing field")
            array = self._array(name, datatype, np.asarray(columns[name]))
            if rows is None:
                rows = (name, array.shape[0])
            elif array.shape[0] != rows[1]:
                raise FieldValidationError(name, f"has {array.shape[0]} rows, field '{rows[0]}' has {rows[1]}")
            arrays[name] = (array, datatype)
        if layout == "packed" and self.packed is not None:
            groups = (
                (PACKED_NUMERIC, "FP32", self.packed.numeric),
                (PACKED_CATEGORICAL, "BYTES", self.packed.categorical),
            )
            arrays = {
                name: (np.concatenate([arrays[field][0] for field in fields], axis=1), datatype)
                for name, datatype, fields in groups
                if fields
            }
        encoded = []
        for name, (array, datatype) in arrays.items():
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


def model_interface(meta: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInterface:
    parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    packed = columns_from_parameters(parameters)
    fields = [i for i in meta["inputs"] if packed is None or i["name"] not in (PACKED_NUMERIC, PACKED_CATEGORICAL)]
    return ModelInterface(
        inputs=[(i["name"], i["datatype"]) for i in fields],
        outputs=[o["name"] for o in meta["outputs"]],
        max_batch_size=int(config.get("max_batch_size", 0)) or 1024,
        shapes={i["name"]: [int(d) for d in i.get("shape", [-1, 1])] for i in fields},
        parameters=parameters,
        packed=packed,
    )


def decode_predictions(result: Any, outputs: list[str], protocol: Protocol, default_name: str) -> list[Prediction]:
    if SURVIVAL_OUTPUTS[0] in outputs:  # one probability per record does not describe a curve
        raise ServingError(f"model '{default_name}' is a survival model: use predict_close_timing()")
    name, version = answered_by(result, protocol, default_name)
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


def answered_by(result: Any, protocol: Protocol, default_name: str) -> tuple[str, str]:
    """(model name, model version) the server says answered."""
    response = result.get_response() if protocol == "http" else result.get_response(as_json=True)
    return response.get("model_name", default_name), str(response.get("model_version", ""))


def with_sequences(records: Records, sequences: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Record columns plus per-record tensors (the sequence model's [rows, length] event arrays)."""
    columns = record_columns(records)
    for name, array in (sequences or {}).items():
        if name in columns:
            raise FieldValidationError(name, "given both as a record field and as a sequence array")
        columns[name] = np.asarray(array)
    return columns


def concatenated(results: list[Any], outputs: list[str]) -> dict[str, np.ndarray]:
    if not results:  # no rows were sent
        return {name: np.empty((0,), dtype=np.float32) for name in outputs}
    return {name: np.concatenate([r.as_numpy(name) for r in results]) for name in outputs}


def decode_forecast(
    interface: ModelInterface, arrays: dict[str, np.ndarray], served_by: tuple[str, str], output: str
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


def decode_close_timing(interface: ModelInterface, results: list[Any], protocol: Protocol, name: str) -> CloseTiming:
    if not set(SURVIVAL_OUTPUTS) <= set(interface.outputs):
        raise ServingError(f"model '{name}' is not a survival model (outputs {interface.outputs}); use predict()")
    arrays = concatenated(results, list(SURVIVAL_OUTPUTS))
    edges = tuple(json.loads(interface.parameters.get("bin_edges", "[]")))
    served_by = answered_by(results[0], protocol, name) if results else (name, "")
    return CloseTiming(
        close_probability=arrays["close_probability"].reshape(-1, max(len(edges) - 1, 1)),
        expected_days=arrays["expected_days"].reshape(-1),
        bin_edges=edges,
        model_name=served_by[0],
        model_version=served_by[1],
    )


def forecast_inputs(history: Any, calendar: Any, series: Any) -> dict[str, np.ndarray]:
    return {"history": np.asarray(history), "calendar": np.asarray(calendar), "series": np.asarray(series)}


@dataclass(frozen=True)
class IdPrediction:
    """One id's answer from `<model>_by_id`: the raw-record endpoint's outputs for the features the online
    store holds for it, `status` ("ok", "stale": older than the view's TTL, still scored; "unknown": no
    features, outputs NaN; "invalid": stored features the model refuses, outputs NaN) and `as_of` (the
    features' ISO time; None when unknown). `outputs` maps each output name to a float (one value per row)
    or a tuple of floats (a curve)."""

    id: str
    status: str
    as_of: str | None
    outputs: dict[str, float | tuple[float, ...]]
    model_name: str
    model_version: str

    @property
    def probability(self) -> float:
        """The first output's last value: P(win) for a binary model; NaN when the id was not scored."""
        first = next(iter(self.outputs.values()), float("nan"))
        return float(first[-1]) if isinstance(first, tuple) else float(first)

    @property
    def scored(self) -> bool:
        return self.status in ("ok", "stale")


def id_column(ids: Iterable[str]) -> np.ndarray:
    """Entity ids as the [N, 1] BYTES column `<model>_by_id` takes; anything but text is refused locally."""
    values = list(ids)
    for position, value in enumerate(values):
        if not isinstance(value, (str, bytes)):
            raise FieldValidationError("ids", f"expected text ids, got {type(value).__name__} at position {position}")
    return np.array(values, dtype=np.object_).reshape(-1, 1)


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def decode_id_predictions(
    result: Any, ids: np.ndarray, outputs: list[str], protocol: Protocol, default_name: str
) -> list[IdPrediction]:
    """Typed rows, in id order, from one `<model>_by_id` answer (its outputs end with status and as_of)."""
    name, version = answered_by(result, protocol, default_name)
    status = result.as_numpy("status").reshape(-1)
    as_of = result.as_numpy("as_of").reshape(-1)
    model_outputs = [o for o in outputs if o not in ("status", "as_of")]
    arrays = {o: result.as_numpy(o).reshape(len(status), -1) for o in model_outputs}
    rows = []
    for i, entity in enumerate(ids.reshape(-1)):
        values = {o: float(a[i, 0]) if a.shape[1] == 1 else tuple(float(v) for v in a[i]) for o, a in arrays.items()}
        stamp = _text(as_of[i])
        rows.append(IdPrediction(_text(entity), _text(status[i]), stamp or None, values, name, version))
    return rows
