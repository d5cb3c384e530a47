"""Client SDK over `tritonclient`: records (dicts or a DataFrame) in, typed predictions out.

Tensor-input models go through the same clients: `predict_forecast(history, calendar, series)` returns a
typed `Forecast` ([B, H, Q] quantiles with their levels), the sequence-fusion model takes its records plus
`sequences={"event_type": [B, L], ...}` in `predict` / `predict_detailed`, a close-timing survival model answers
`predict_close_timing(records)` with a typed `CloseTiming` (P(closed by each bin edge) [N, K] and expected days),
`infer(arrays)` sends any named arrays and returns every output, and `predict_by_id(ids)` scores entities
by id through `<model>_by_id` (features from the online store) into typed `IdPrediction` rows. Shapes are
checked locally against the server's model metadata.

Raw-record models are sent the packed layout (two tensors, `serving/packed.py`) the server publishes: Triton
pays per tensor per request, so two beat ~20 (reports/bench_serving.json); `layout="named"` sends one per field.

Sync (`TritonPredictionClient`) and asyncio (`AsyncTritonPredictionClient`) clients, over HTTP or gRPC.
They learn input names and types from the server's model metadata, so they carry no feature code: the
preprocessing lives in the served graph. Records that cannot even be encoded (missing or unknown field,
text in a numeric field) raise FieldValidationError locally; value problems the server finds (NaN,
negative amounts, ...) come back as FieldValidationError too, parsed from the server's message.
Unavailable/overloaded servers are retried with exponential backoff; field errors never are.
Any plain tritonclient / KServe-v2 client works against the same server. Encoding, decoding and error
mapping live in `codec.py`, shared by both clients.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

from fulqrun_ml.serving.codec import (
    ID_INPUT,
    CloseTiming,
    Forecast,
    IdPrediction,
    Layout,
    ModelInterface,
    Prediction,
    Protocol,
    Records,
    RetryPolicy,
    answered_by,
    by_id_name,
    concatenated,
    decode_close_timing,
    decode_forecast,
    decode_id_predictions,
    decode_predictions,
    forecast_inputs,
    id_column,
    is_retryable,
    model_interface,
    raise_for_server_error,
    record_columns,
    with_sequences,
)
from fulqrun_ml.serving.tenant_gateway import ORG_ENV, ORG_HEADER
from fulqrun_ml.serving.tls import grpc_client_options  # TLS from $FULQRUN_TRITON_TLS_CA (serving/tls.py)


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
        layout: Layout = "packed",
        organization_id: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.protocol = protocol
        self.layout = layout  # "named": one tensor per field, as any KServe client sends
        self.retry = retry or RetryPolicy()
        # The caller's organisation (else $FULQRUN_ORG), sent as X-Fulqrun-Org with every inference; the HTTP
        # gateway scopes the request's ids to it (serving/tenant_gateway.py).
        org = organization_id or os.environ.get(ORG_ENV)
        self._headers = {ORG_HEADER: org} if org else None
        self._lib = httpclient if protocol == "http" else grpcclient
        if protocol == "http":
            self._client = httpclient.InferenceServerClient(
                url=url, concurrency=concurrency, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self._client = grpcclient.InferenceServerClient(url=url, **grpc_client_options())
        self._interface: ModelInterface | None = None
        self._by_id: dict[str, ModelInterface] = {}

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

    def is_ready(self) -> bool:
        """Health check that covers the model: the server is ready AND this client's model (version) is. A
        server-only check said "ready" while the model had been unloaded and every prediction failed."""
        try:
            return bool(
                self._client.is_server_ready() and self._client.is_model_ready(self.model_name, self.model_version)
            )
        except (InferenceServerException, ConnectionError, OSError, TimeoutError):
            return False

    @property
    def interface(self) -> ModelInterface:
        if self._interface is None:
            self._interface = self._fetch_interface(self.model_name, self.model_version)
        return self._interface

    def _fetch_interface(self, model: str, version: str) -> ModelInterface:
        as_json = {} if self.protocol == "http" else {"as_json": True}
        meta = self._call(self._client.get_model_metadata, model, version, **as_json)
        config = self._call(self._client.get_model_config, model, version, **as_json)
        return model_interface(meta, config if self.protocol == "http" else config["config"])

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
            inputs = interface.encode(self._lib, chunk, self.model_name, self.layout)
            results.append(
                self._call(
                    self._client.infer,
                    self.model_name,
                    inputs,
                    model_version=version,
                    outputs=outputs,
                    headers=self._headers,
                )
            )
        return results

    def predict_detailed(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> list[Prediction]:
        """Typed predictions in record order (chunked to the server's max batch size). `sequences`: the
        sequence model's per-record event arrays ({"event_type": [rows, length], ...})."""
        results = self._infer_chunks(with_sequences(records, sequences), model_version)
        outputs = self.interface.outputs
        return [p for r in results for p in decode_predictions(r, outputs, self.protocol, self.model_name)]

    def predict(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Probabilities only, as a float32 array in record order."""
        predictions = self.predict_detailed(records, model_version, sequences)
        return np.array([p.probability for p in predictions], dtype=np.float32)

    def infer(self, arrays: Mapping[str, Any], model_version: str | None = None) -> dict[str, np.ndarray]:
        """Any model, raw: named input arrays (batch axis first) in, every output array out."""
        results = self._infer_chunks({k: np.asarray(v) for k, v in arrays.items()}, model_version)
        return concatenated(results, self.interface.outputs)

    def predict_close_timing(self, records: Records, model_version: str | None = None) -> CloseTiming:
        """A close-timing survival model's curves for raw CRM records, in record order."""
        results = self._infer_chunks(record_columns(records), model_version)
        return decode_close_timing(self.interface, results, self.protocol, self.model_name)

    def predict_forecast(self, history: Any, calendar: Any, series: Any, model_version: str | None = None) -> Forecast:
        """Revenue quantiles: history [B, L], calendar [B, H, C] (`windows.future_calendar`), series [B]
        (series_index.json position + 1, 0 for an unseen series) -> Forecast with quantiles [B, H, Q]."""
        results = self._infer_chunks(forecast_inputs(history, calendar, series), model_version)
        arrays = concatenated(results, self.interface.outputs)
        served_by = answered_by(results[0], self.protocol, self.model_name) if results else (self.model_name, "")
        return decode_forecast(self.interface, arrays, served_by, self.interface.outputs[0])

    def predict_by_id(
        self, ids: Iterable[str], model: str | None = None, model_version: str = ""
    ) -> list[IdPrediction]:
        """Score entities by id through `<model>_by_id` (default: this client's model): features come from the
        online store, answers are the raw-record endpoint's, per id with its status and the features' as_of.
        An unknown id is a row with status "unknown" and NaN outputs, not an error; a store outage raises
        OnlineStoreUnavailableError after the retries."""
        name = by_id_name(model or self.model_name)
        if name not in self._by_id:
            self._by_id[name] = self._fetch_interface(name, model_version)
        interface = self._by_id[name]
        column = id_column(ids)
        outputs = [self._lib.InferRequestedOutput(o) for o in interface.outputs]
        rows: list[IdPrediction] = []
        for start in range(0, len(column), interface.max_batch_size):
            chunk = column[start : start + interface.max_batch_size]
            tensor = self._lib.InferInput(ID_INPUT, list(chunk.shape), "BYTES")
            tensor.set_data_from_numpy(chunk)
            result = self._call(
                self._client.infer, name, [tensor], model_version=model_version, outputs=outputs, headers=self._headers
            )
            rows += decode_id_predictions(result, chunk, interface.outputs, self.protocol, name)
        return rows

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
        layout: Layout = "packed",
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.protocol = protocol
        self.layout = layout
        self.retry = retry or RetryPolicy()
        self._lib = httpaio if protocol == "http" else grpcaio
        if protocol == "http":
            self._client = httpaio.InferenceServerClient(url=url, conn_limit=concurrency)
        else:
            self._client = grpcaio.InferenceServerClient(url=url, **grpc_client_options())
        self._interface: ModelInterface | None = None
        self._by_id: dict[str, ModelInterface] = {}

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

    async def interface(self) -> ModelInterface:
        if self._interface is None:
            self._interface = await self._fetch_interface(self.model_name, self.model_version)
        return self._interface

    async def _fetch_interface(self, model: str, version: str) -> ModelInterface:
        as_json = {} if self.protocol == "http" else {"as_json": True}
        meta = await self._call(self._client.get_model_metadata, model, version, **as_json)
        config = await self._call(self._client.get_model_config, model, version, **as_json)
        return model_interface(meta, config if self.protocol == "http" else config["config"])

    async def _infer_chunks(self, columns: Mapping[str, np.ndarray], model_version: str | None) -> list[Any]:
        interface = await self.interface()
        version = self.model_version if model_version is None else model_version
        outputs = [self._lib.InferRequestedOutput(name) for name in interface.outputs]
        results = []
        for chunk in interface.chunks(columns):
            inputs = interface.encode(self._lib, chunk, self.model_name, self.layout)
            results.append(
                await self._call(self._client.infer, self.model_name, inputs, model_version=version, outputs=outputs)
            )
        return results

    async def predict_detailed(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> list[Prediction]:
        results = await self._infer_chunks(with_sequences(records, sequences), model_version)
        outputs = (await self.interface()).outputs
        return [p for r in results for p in decode_predictions(r, outputs, self.protocol, self.model_name)]

    async def predict(
        self, records: Records, model_version: str | None = None, sequences: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        predictions = await self.predict_detailed(records, model_version, sequences)
        return np.array([p.probability for p in predictions], dtype=np.float32)

    async def infer(self, arrays: Mapping[str, Any], model_version: str | None = None) -> dict[str, np.ndarray]:
        results = await self._infer_chunks({k: np.asarray(v) for k, v in arrays.items()}, model_version)
        return concatenated(results, (await self.interface()).outputs)

    async def predict_close_timing(self, records: Records, model_version: str | None = None) -> CloseTiming:
        """A close-timing survival model's curves for raw CRM records, in record order."""
        results = await self._infer_chunks(record_columns(records), model_version)
        return decode_close_timing(await self.interface(), results, self.protocol, self.model_name)

    async def predict_forecast(
        self, history: Any, calendar: Any, series: Any, model_version: str | None = None
    ) -> Forecast:
        interface = await self.interface()
        results = await self._infer_chunks(forecast_inputs(history, calendar, series), model_version)
        arrays = concatenated(results, interface.outputs)
        served_by = answered_by(results[0], self.protocol, self.model_name) if results else (self.model_name, "")
        return decode_forecast(interface, arrays, served_by, interface.outputs[0])

    async def predict_by_id(
        self, ids: Iterable[str], model: str | None = None, model_version: str = ""
    ) -> list[IdPrediction]:
        """`TritonPredictionClient.predict_by_id`, awaited."""
        name = by_id_name(model or self.model_name)
        if name not in self._by_id:
            self._by_id[name] = await self._fetch_interface(name, model_version)
        interface = self._by_id[name]
        column = id_column(ids)
        outputs = [self._lib.InferRequestedOutput(o) for o in interface.outputs]
        rows: list[IdPrediction] = []
        for start in range(0, len(column), interface.max_batch_size):
            chunk = column[start : start + interface.max_batch_size]
            tensor = self._lib.InferInput(ID_INPUT, list(chunk.shape), "BYTES")
            tensor.set_data_from_numpy(chunk)
            result = await self._call(self._client.infer, name, [tensor], model_version=model_version, outputs=outputs)
            rows += decode_id_predictions(result, chunk, interface.outputs, self.protocol, name)
        return rows

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncTritonPredictionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
