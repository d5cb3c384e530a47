"""Triton Python-backend model for tensor-input graphs: validate every input against the version's serving
spec, run the ONNX graph in onnxruntime.

Serves the models whose inputs are not one raw CRM column per record: the revenue forecaster (`history`
[B, L], `calendar` [B, H, C], `series` [B]) and the deal-win sequence fusion (raw tabular columns [B, 1] plus
padded event tensors [B, length]). Copied into <repo>/<model>/<version>/ by `fulqrun_ml.serving.repository`
together with `serving_spec.json`, which that module derives from the version's metadata.json and the files
the version ships (feature_spec.json, sequence_vocab.json, series_index.json). The backend itself knows no
model kind: it only enforces the spec, so one backend serves every tensor model. Runs inside Triton's Python
stub, so it imports only numpy, onnxruntime and the backend's `triton_python_backend_utils`.

serving_spec.json: {"inputs": [{"name", "dtype": float32|int64|string, "shape": ["batch", 12 | "length" |
null, ...], "allow_nan", "min", "max"}], "axes": {"length": {"max": 50}}}. In a shape, an int is a fixed
size, a string a named axis (every input naming it must agree, e.g. all event tensors share one length), null
a free axis; the first axis is the batch.

Each request is validated on its own (missing/unknown field, dtype, rank and shape, NaN/inf, value bounds
such as vocabulary or series index ranges, max batch), so a bad request gets an error naming the field while
the other requests of the dynamic batch are still answered. Valid requests with the same non-batch shapes are
concatenated and scored in one onnxruntime call (sequences of different lengths are scored separately rather
than re-padded, so a served answer is exactly what onnxruntime gives for that request alone).

With the config parameter `prediction_log_dir` every answered request is appended to this instance's spool
file before the responses are returned (`prediction_spool.py`, copied next to this file; the same format and
guarantees as the python-ort backend, one line per request): every input tensor, except string inputs without
a training vocabulary in feature_spec.json (never logged); strings outside the vocabulary are scrubbed.
"""

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

SPEC_FILE = "serving_spec.json"
NUMPY = {"float32": np.dtype(np.float32), "int64": np.dtype(np.int64), "string": np.dtype(object)}
BATCH = "batch"


def decode_utf8(array):
    """Triton hands string fields over as bytes objects; onnxruntime needs str (given bytes, its LabelEncoder
    silently maps every value to "unknown"). Same as serving/python_ort/model.py: each template is copied
    alone into a version directory, so the few lines are repeated rather than imported."""
    return np.fromiter(map(bytes.decode, array.ravel()), dtype=object, count=array.size).reshape(array.shape)


def load_spool_module():
    """prediction_spool.py from this version directory, loaded by path (the stub's sys.path does not have it)."""
    path = Path(__file__).with_name("prediction_spool.py")
    spec = importlib.util.spec_from_file_location("fulqrun_prediction_spool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RequestError(Exception):
    """A request's field is unusable; the message names the field."""


def client_error(message):
    """A 400 Bad Request (INVALID_ARG), not Triton's default 500: the caller sent something wrong."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


def shape_text(shape):
    return "[" + ", ".join("?" if axis is None else str(axis) for axis in shape) + "]"


class InputRule:
    """What one input must look like; `check` returns the array ready for onnxruntime or raises RequestError."""

    def __init__(self, entry):
        self.name = entry["name"]
        self.dtype = entry["dtype"]
        if self.dtype not in NUMPY:
            raise ValueError(f"{SPEC_FILE}: input '{self.name}' has unsupported dtype '{self.dtype}'")
        self.shape = list(entry["shape"])
        self.allow_nan = bool(entry.get("allow_nan", False))
        self.low = entry.get("min")
        self.high = entry.get("max")

    def check_structure(self, array, axes):
        """dtype, rank and axis sizes; `axes` collects the sizes of the batch and named axes seen so far."""
        if array.dtype != NUMPY[self.dtype]:
            raise RequestError(f"field '{self.name}': expected {self.dtype}, got {array.dtype}")
        if array.ndim != len(self.shape):
            raise RequestError(f"field '{self.name}': expected shape {shape_text(self.shape)}, got {list(array.shape)}")
        for axis, size in zip(self.shape, array.shape, strict=True):
            if isinstance(axis, int) and size != axis:
                raise RequestError(
                    f"field '{self.name}': expected shape {shape_text(self.shape)}, got {list(array.shape)}"
                )
            if axis is None or isinstance(axis, int):
                if size < 1:
                    raise RequestError(f"field '{self.name}': empty axis in shape {list(array.shape)}")
                continue
            seen = axes.get(axis)
            if seen is None:
                axes[axis] = (size, self.name)
            elif seen[0] != size:
                what = "rows" if axis == BATCH else f"'{axis}' of {size}"
                other = f"{seen[0]} rows" if axis == BATCH else f"{seen[0]}"
                raise RequestError(f"field '{self.name}': has {what}, field '{seen[1]}' has {other}")

    def check_values(self, array):
        if self.dtype == "string":
            try:
                return decode_utf8(array)
            except UnicodeDecodeError:
                raise RequestError(f"field '{self.name}': is not valid UTF-8 text") from None
        not_finite = self.dtype == "float32" and (
            np.isinf(array).any() or (not self.allow_nan and np.isnan(array).any())
        )
        if not_finite:
            raise RequestError(f"field '{self.name}': contains NaN or infinite values")
        if self.low is not None and (array < self.low).any():
            bad = array[array < self.low].flat[0]
            raise RequestError(f"field '{self.name}': must be >= {self.low}{self._range()}, got {bad}")
        if self.high is not None and (array > self.high).any():
            bad = array[array > self.high].flat[0]
            raise RequestError(f"field '{self.name}': must be <= {self.high}{self._range()}, got {bad}")
        return array

    def _range(self):
        """Integer bounds are index ranges (vocabulary, series): say so, the fix is on the client's encoding."""
        return f" (index range [{self.low}, {self.high}])" if self.dtype == "int64" else ""


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = json.loads((version_dir / SPEC_FILE).read_text())
        self.rules = [InputRule(entry) for entry in spec["inputs"]]
        self.names = {rule.name for rule in self.rules}
        self.axis_limits = {name: limits.get("max") for name, limits in spec.get("axes", {}).items()}
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.outputs = [(o["name"], o["data_type"]) for o in config["output"]]
        parameters = config.get("parameters", {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("ort_intra_op_threads", {}).get("string_value", "1"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(version_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.spool = None
        if parameters.get("prediction_log_dir", {}).get("string_value"):
            self.log = load_spool_module()
            self.spool = self.log.spool_from_config(config, args)
            self.log_head = {"model": args["model_name"], "version": int(args["model_version"])}
            features = version_dir / "feature_spec.json"
            vocabularies = json.loads(features.read_text()).get("vocabularies", {}) if features.is_file() else {}
            self.vocabularies = {name: frozenset(values) for name, values in vocabularies.items()}
        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != self.names:  # a spec that does not describe the graph is a build bug: fail the load
            raise ValueError(f"{SPEC_FILE} inputs {sorted(self.names)} != model.onnx inputs {sorted(graph_inputs)}")

    def _feeds(self, request):
        """One request's inputs, validated and decoded; returns (feeds, rows, shape key for merging)."""
        tensors = {tensor.name(): tensor for tensor in request.inputs()}
        for rule in self.rules:
            if rule.name not in tensors:
                raise RequestError(f"field '{rule.name}': missing input")
        extra = sorted(set(tensors) - self.names)
        if extra:
            raise RequestError(f"field '{extra[0]}': unknown input")
        axes = {}
        arrays = {}
        for rule in self.rules:
            arrays[rule.name] = tensors[rule.name].as_numpy()
            rule.check_structure(arrays[rule.name], axes)
        rows = axes[BATCH][0]
        if self.max_batch_size and rows > self.max_batch_size:
            raise RequestError(f"batch of {rows} rows exceeds max_batch_size {self.max_batch_size}")
        for axis, (size, first) in axes.items():
            limit = self.axis_limits.get(axis)
            if limit is not None and size > limit:
                raise RequestError(f"field '{first}': axis '{axis}' is {size}, at most {limit}")
        feeds = {rule.name: rule.check_values(arrays[rule.name]) for rule in self.rules}
        key = tuple(array.shape[1:] for array in feeds.values())
        return feeds, rows, key

    def execute(self, requests):
        started = time.perf_counter()
        responses = [None] * len(requests)
        groups = {}  # shape key -> [(request index, feeds, rows)]
        for i, request in enumerate(requests):
            try:
                feeds, rows, key = self._feeds(request)
            except RequestError as exc:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=client_error(str(exc)))
                continue
            except Exception as exc:  # never crash the stub
                message = f"request rejected: {type(exc).__name__}: {exc}"
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
                continue
            groups.setdefault(key, []).append((i, feeds, rows))
        answered = []  # (request index, feeds, rows, outputs) for the prediction log
        for members in groups.values():
            self._run(members, responses, answered if self.spool is not None else None)
        if answered:
            self._log_predictions(requests, answered, started, responses)
        return responses

    def _log_predictions(self, requests, answered, started, responses):
        """One line per answered request, one write for the batch, before the responses go out; a failed
        write turns those answers into errors, so nothing is acknowledged that the log does not hold."""
        try:
            log = self.log
            head = dict(self.log_head, time=log.utc_now(), latency_ms=round((time.perf_counter() - started) * 1e3, 3))
            lines = []
            for i, feeds, rows, outputs in answered:
                inputs = {}
                for name, array in feeds.items():
                    if array.dtype == object:
                        if name not in self.vocabularies:
                            continue  # a string with no training vocabulary: never logged
                        inputs[name] = log.scrub_categorical(array.ravel().tolist(), self.vocabularies[name])
                    else:
                        inputs[name] = log.encode_column(array)
                request_id, entity_ids = log.request_identity(requests[i], rows)
                lines.append(log.batch_line(head, [[request_id, rows, entity_ids]], inputs, outputs))
            self.spool.write(b"".join(lines))
        except Exception as exc:
            error = pb_utils.TritonError(f"prediction log unavailable: {type(exc).__name__}: {exc}")
            for i, *_ in answered:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=error)

    def _run(self, members, responses, answered=None):
        """One onnxruntime call for requests of the same shapes; each caller gets its rows back (and, when
        `answered` is a list, its inputs and outputs are added to it for the prediction log)."""
        try:
            if len(members) == 1:
                feeds = members[0][1]
            else:
                feeds = {name: np.concatenate([m[1][name] for m in members]) for name in members[0][1]}
            results = self.session.run([name for name, _ in self.outputs], feeds)
            start = 0
            for i, member_feeds, rows in members:
                arrays = [
                    np.ascontiguousarray(result[start : start + rows]).astype(_dtype(kind))
                    for (_, kind), result in zip(self.outputs, results, strict=True)
                ]
                tensors = [pb_utils.Tensor(name, a) for (name, _), a in zip(self.outputs, arrays, strict=True)]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                if answered is not None:
                    outputs = {
                        name: self.log.encode_column(a) for (name, _), a in zip(self.outputs, arrays, strict=True)
                    }
                    answered.append((i, member_feeds, rows, outputs))
                start += rows
        except Exception as exc:  # never crash the stub: report the failure to each caller
            message = f"inference failed: {type(exc).__name__}: {exc}"
            for i, _, _ in members:
                if responses[i] is None:
                    error = pb_utils.TritonError(message)
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=error)

    def finalize(self):
        self.session = None
        if self.spool is not None:
            self.spool.close()


def _dtype(triton_type):
    """Output numpy dtype from the config's data_type (TYPE_FP32 -> float32)."""
    return pb_utils.triton_string_to_numpy(triton_type)
