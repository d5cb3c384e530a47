"""A small client over `tritonclient`: records (dicts or a DataFrame) in, probabilities out.

It learns input names and types from the server's model metadata, so it carries no feature code: the
preprocessing lives in the served graph. Records that cannot even be encoded (missing or unknown field,
text in a numeric field) raise FieldValidationError locally; value problems the server finds (NaN,
negative amounts, ...) come back as FieldValidationError too, parsed from the server's message.
Any plain tritonclient / KServe-v2 client works against the same server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import FieldValidationError, ServingError

FIELD_ERROR = re.compile(r"field '(?P<field>[^']+)': (?P<reason>.+)")
NUMPY_DTYPES = {"FP32": np.float32, "INT64": np.int64, "BYTES": np.object_}


def raise_for_server_error(exc: InferenceServerException) -> None:
    """Map a server error to FieldValidationError when it names a field, else ServingError."""
    message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    match = FIELD_ERROR.search(message or "")
    if match:
        raise FieldValidationError(match["field"], match["reason"].strip()) from None
    raise ServingError(f"Triton error: {message}") from None


class TritonPredictionClient:
    def __init__(
        self,
        url: str,
        model_name: str,
        protocol: Literal["http", "grpc"] = "http",
        model_version: str = "",
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.protocol = protocol
        self._lib = httpclient if protocol == "http" else grpcclient
        self._client = self._lib.InferenceServerClient(url=url)
        self._inputs: list[tuple[str, str]] | None = None
        self._outputs: list[str] | None = None
        self._max_batch_size = 0

    def _load_metadata(self) -> None:
        try:
            if self.protocol == "http":
                meta = self._client.get_model_metadata(self.model_name, self.model_version)
                config = self._client.get_model_config(self.model_name, self.model_version)
            else:
                meta = self._client.get_model_metadata(self.model_name, self.model_version, as_json=True)
                config = self._client.get_model_config(self.model_name, self.model_version, as_json=True)["config"]
        except InferenceServerException as exc:
            raise_for_server_error(exc)
        self._inputs = [(i["name"], i["datatype"]) for i in meta["inputs"]]
        self._outputs = [o["name"] for o in meta["outputs"]]
        self._max_batch_size = int(config.get("max_batch_size", 0)) or 1024

    @property
    def inputs(self) -> list[tuple[str, str]]:
        if self._inputs is None:
            self._load_metadata()
        return self._inputs

    def _encode(self, frame: pd.DataFrame) -> list[Any]:
        names = {name for name, _ in self.inputs}
        extra = [c for c in frame.columns if c not in names]
        if extra:
            raise FieldValidationError(extra[0], "unknown field for model " + self.model_name)
        encoded = []
        for name, datatype in self.inputs:
            if name not in frame.columns:
                raise FieldValidationError(name, "missing field")
            column = frame[name]
            if datatype == "BYTES":
                if column.isna().any():
                    raise FieldValidationError(name, "missing value")
                array = column.astype(str).to_numpy(dtype=np.object_).reshape(-1, 1)
            else:
                try:
                    array = pd.to_numeric(column, errors="raise").to_numpy(dtype=NUMPY_DTYPES[datatype])
                except (ValueError, TypeError):
                    raise FieldValidationError(name, f"expected a number ({datatype})") from None
                array = array.reshape(-1, 1)
            tensor = self._lib.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            encoded.append(tensor)
        return encoded

    def predict(self, records: pd.DataFrame | Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities for each record, in order (chunked to the server's max batch size)."""
        frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
        if frame.empty:
            return np.empty(0, dtype=np.float32)
        self.inputs  # noqa: B018 - loads metadata (and max batch size) once
        parts = []
        for start in range(0, len(frame), self._max_batch_size):
            chunk = frame.iloc[start : start + self._max_batch_size]
            parts.append(self._infer(self._encode(chunk)))
        return np.concatenate(parts)

    def _infer(self, inputs: list[Any]) -> np.ndarray:
        outputs = [self._lib.InferRequestedOutput(name) for name in self._outputs]
        try:
            result = self._client.infer(self.model_name, inputs, model_version=self.model_version, outputs=outputs)
        except InferenceServerException as exc:
            raise_for_server_error(exc)
        return result.as_numpy(self._outputs[0]).reshape(-1)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonPredictionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
