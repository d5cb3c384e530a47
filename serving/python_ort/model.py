"""Triton Python-backend model: validate raw feature columns, run the ONNX graph in onnxruntime.

Copied into <repo>/<model>/<version>/ by `fulqrun_ml.serving.repository`. Runs inside Triton's Python
stub, so it imports only numpy, onnxruntime and the backend's `triton_python_backend_utils`.

Requests arrive in groups (dynamic batching). Each request is validated on its own, so one bad request
gets an error naming the field while the others in the same group are still answered; valid ones are
concatenated and scored in one onnxruntime call.

A request comes in one of two layouts (both optional inputs in the config; Triton still refuses unknown
inputs, wrong dtypes and widths): one [rows, 1] tensor per field (any KServe client), or packed, one FP32
[rows, k] `packed_numeric` and one BYTES [rows, m] `packed_categorical` whose column order the config
parameters `packed_numeric_columns` / `packed_categorical_columns` publish (fulqrun_ml/serving/packed.py).
Both become the same two matrices here, so validation and scoring are shared, and a bad value in a packed
column gets an error naming its field.

Every output the config declares (besides `reasons`) is returned, as [rows, width]: `probability` [rows, 1]
for binary tasks, `prediction` for regression, `close_probability` [rows, K] and `expected_days` [rows, 1] for
close-timing survival.

With the config parameter `reasons_top_k` > 0 (the separate `<model>_reasons` endpoint, so the plain
endpoint stays fast) it also returns `reasons`: per record, a JSON string with the top positive and negative
fields for the last column of the first output (the probability; for survival, P(closed within the
horizon)), each field's effect measured by feature ablation against the training baseline (the field set to a
typical value: numeric mean, most frequent category). The same computation as captum's FeatureAblation
on the PyTorch model, which a test checks.

With the config parameter `prediction_log_dir` (the prediction log, set by `fulqrun_ml.serving.deploy` from
configs/serving/*.yaml) every answered request is appended to this instance's spool file before its response
is returned, by `prediction_spool.py` (copied next to this file): the declared feature columns (categoricals
outside the training vocabulary scrubbed), the outputs, the request id and the batch's latency. Requests
refused for a bad field are not logged: they are not predictions. If the record cannot be written, the
request gets an error instead of an answer, so no answered prediction is missing from the log.
"""

import cProfile
import importlib.util
import json
import time
from operator import attrgetter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

SHAPE, DTYPE = attrgetter("shape"), attrgetter("dtype")
PACKED_NUMERIC, PACKED_CATEGORICAL = "packed_numeric", "packed_categorical"  # fulqrun_ml/serving/packed.py
FLOAT32 = {np.dtype(np.float32)}


def decode_utf8(array):
    """Triton hands string fields over as bytes objects; onnxruntime needs str (given bytes, its
    LabelEncoder silently maps every value to "unknown"). `map(bytes.decode)` is ~10x faster than numpy's
    char.decode, the largest cost of this backend before, and raises UnicodeDecodeError the same way."""
    return np.fromiter(map(bytes.decode, array.ravel()), dtype=object, count=array.size).reshape(array.shape)


def load_sibling(filename, module_name):
    """A helper copied into this version directory, loaded by path (the stub's sys.path does not have it)."""
    spec = importlib.util.spec_from_file_location(module_name, Path(__file__).with_name(filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_spool_module():
    return load_sibling("prediction_spool.py", "fulqrun_prediction_spool")


class RequestError(Exception):
    """A request's field is unusable; the message names the field."""


def client_error(message):
    """A 400 Bad Request (INVALID_ARG), not Triton's default 500: the caller sent something wrong."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


class TritonPythonModel:
    def initialize(self, args):
        # The stub deserializes BYTES inputs (packed_categorical, named categoricals) with a per-element Python
        # loop before execute() runs; triton_bytes.py (copied next to this file) says why and how it is faster.
        load_sibling("triton_bytes.py", "fulqrun_triton_bytes").install(pb_utils)
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = json.loads((version_dir / "feature_spec.json").read_text())
        self.numeric = [f["name"] for f in spec["numeric"]]
        self.non_negative = {f["name"] for f in spec["numeric"] if f.get("log1p")}
        self.categorical = [f["name"] for f in spec["categorical"]]
        self.names = self.numeric + self.categorical
        self._init_packed(config.get("parameters", {}))
        self.numeric_set = set(self.numeric)
        self.n_numeric = len(self.numeric)
        # Columns whose missing values the graph fills with the training median (user tables); NaN is fine there.
        self.imputed = {f["name"] for f in spec["numeric"] if f.get("impute_missing")}
        self.nan_allowed = np.array([name in self.imputed for name in self.numeric], dtype=bool)
        self.non_negative_index = [j for j, name in enumerate(self.numeric) if name in self.non_negative]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.output_names = [o["name"] for o in config["output"] if o["name"] != "reasons"]
        parameters = config.get("parameters", {})
        threads = int(parameters.get("ort_intra_op_threads", {}).get("string_value", "1"))
        self.top_k = int(parameters.get("reasons_top_k", {}).get("string_value", "0"))
        self.baseline = spec.get("raw_baseline", {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(version_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        # Profiling (config parameter `profile_path`, set by the serving benchmark's --profile): cProfile around
        # execute(), written when the model unloads, so the hot path is measured inside the real stub.
        self.profile_path = parameters.get("profile_path", {}).get("string_value")
        self.profiler = cProfile.Profile() if self.profile_path else None
        self.spool = None
        if parameters.get("prediction_log_dir", {}).get("string_value"):
            self.log = load_spool_module()
            self.spool = self.log.spool_from_config(config, args)
            self.log_head = {"model": args["model_name"], "version": int(args["model_version"])}
            vocabularies = spec.get("vocabularies", {})
            self.scrubbed = self.log.ScrubbedColumns({name: vocabularies.get(name, ()) for name in self.categorical})

    def _init_packed(self, parameters):
        """The packed layout (fulqrun_ml/serving/packed.py): two inputs whose columns the config names. Their
        order may differ from the feature spec's; `_order` holds the permutation to apply, None when equal."""
        self.packed_inputs = []
        self.packed_order = {}
        for tensor, key, fields in (
            (PACKED_NUMERIC, "packed_numeric_columns", self.numeric),
            (PACKED_CATEGORICAL, "packed_categorical_columns", self.categorical),
        ):
            columns = json.loads(parameters.get(key, {}).get("string_value", "[]"))
            if not columns:
                continue
            if sorted(columns) != sorted(fields):
                raise ValueError(f"{key} {columns} are not the feature spec's fields {fields}")
            self.packed_inputs.append(tensor)
            order = [columns.index(name) for name in fields]
            self.packed_order[tensor] = None if order == list(range(len(order))) else order
        # Both groups present and in the feature spec's order: `_arrays` takes such a request as it comes.
        plain = len(self.packed_inputs) == 2 and not any(self.packed_order.values())
        self.packed_fast = tuple(self.packed_inputs) if plain else None

    def _packed_arrays(self, tensors):
        """Structural checks for a packed request: both declared packed inputs and nothing else. Triton itself
        has checked each one's dtype, width and batch size against the config."""
        if len(tensors) != len(self.packed_inputs) or any(name not in tensors for name in self.packed_inputs):
            missing = [name for name in self.packed_inputs if name not in tensors]
            if missing:
                raise RequestError(
                    f"field '{missing[0]}': missing input (the packed layout sends both {self.packed_inputs})"
                )
            extra = next(name for name in tensors if name not in self.packed_inputs)
            raise RequestError(f"field '{extra}': send either the packed layout or one input per field, not both")
        matrices = []
        for name in self.packed_inputs:
            array = tensors[name].as_numpy()
            order = self.packed_order[name]
            matrices.append(array if order is None else array[:, order])
        rows = matrices[0].shape[0]
        if any(m.ndim != 2 or m.shape[0] != rows for m in matrices):
            raise RequestError(f"field '{self.packed_inputs[-1]}': expected [batch, columns] with {rows} rows")
        if self.max_batch_size and rows > self.max_batch_size:
            raise RequestError(f"batch of {rows} rows exceeds max_batch_size {self.max_batch_size}")
        numeric = matrices[0] if self.numeric else np.empty((rows, 0), np.float32)
        categorical = matrices[-1] if self.categorical else np.empty((rows, 0), object)
        return numeric, categorical, rows

    def _arrays(self, request):
        """Structural checks for one request (presence, dtype, shape); values are checked on the merged batch.

        Returns (numeric [rows, n_numeric] float32, categorical [rows, n_categorical] bytes objects, rows):
        one matrix per kind, so merging the requests of a dynamic batch is two concatenations, not one per
        field. The common all-good case costs a few comparisons; only a bad request walks the fields to
        name the first bad one. A packed request (two tensors) arrives as those matrices already."""
        inputs = request.inputs()
        if len(inputs) == len(self.packed_inputs) and self.packed_fast:
            names = tuple(tensor.name() for tensor in inputs)
            if names == self.packed_fast:  # the SDK's packed request: 2 tensors, in order, nothing to rearrange;
                # Triton has checked dtypes, widths, equal batch sizes and max_batch_size against the config.
                numeric, categorical = inputs[0].as_numpy(), inputs[1].as_numpy()
                return numeric, categorical, numeric.shape[0]
        tensors = {tensor.name(): tensor for tensor in inputs}  # one pass, not one lookup per field
        if self.packed_inputs and not tensors.keys().isdisjoint(self.packed_inputs):
            return self._packed_arrays(tensors)
        try:
            arrays = [tensors[name].as_numpy() for name in self.names]
        except KeyError:
            missing = next(name for name in self.names if name not in tensors)
            raise RequestError(f"field '{missing}': missing input") from None
        shapes = set(map(SHAPE, arrays))
        shape = arrays[0].shape
        well_formed = len(shapes) == 1 and len(shape) == 2 and shape[1] == 1
        if not (well_formed and set(map(DTYPE, arrays[: self.n_numeric])) <= FLOAT32):
            self._raise_structural_error(arrays)
        rows = shape[0]
        if self.max_batch_size and rows > self.max_batch_size:
            raise RequestError(f"batch of {rows} rows exceeds max_batch_size {self.max_batch_size}")
        numeric = np.concatenate(arrays[: self.n_numeric], axis=1) if self.n_numeric else np.empty((rows, 0))
        categorical = (
            np.concatenate(arrays[self.n_numeric :], axis=1) if self.categorical else np.empty((rows, 0), object)
        )
        return numeric.astype(np.float32, copy=False), categorical, rows

    def _raise_structural_error(self, arrays):
        rows = None
        for name, array in zip(self.names, arrays, strict=True):
            if array.ndim != 2 or array.shape[1] != 1:
                raise RequestError(f"field '{name}': expected shape [batch, 1], got {list(array.shape)}")
            if rows is None:
                rows = array.shape[0]
            elif array.shape[0] != rows:
                raise RequestError(f"field '{name}': has {array.shape[0]} rows, other fields have {rows}")
            if name in self.numeric_set and array.dtype != np.float32:
                raise RequestError(f"field '{name}': expected FP32, got {array.dtype}")

    def _value_error(self, feeds, lo, hi):
        """The first bad field in rows [lo, hi) of the merged batch, as a message; None if all are fine."""
        for name in self.numeric:
            values = feeds[name][lo:hi]
            if np.isinf(values).any() or (name not in self.imputed and np.isnan(values).any()):
                return f"field '{name}': contains NaN or infinite values"
            if name in self.non_negative and (values < 0).any():
                return f"field '{name}': must be >= 0"
        for name in self.categorical:
            try:
                decode_utf8(feeds[name][lo:hi])
            except UnicodeDecodeError:
                return f"field '{name}': is not valid UTF-8 text"
        return None

    def execute(self, requests):
        if self.profiler is None:
            return self._execute(requests)
        self.profiler.enable()
        try:
            return self._execute(requests)
        finally:
            self.profiler.disable()

    def _execute(self, requests):
        started = time.perf_counter()
        responses = [None] * len(requests)
        valid = []  # (request index, numeric, categorical, rows)
        for i, request in enumerate(requests):
            try:
                valid.append((i, *self._arrays(request)))
            except RequestError as exc:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=client_error(str(exc)))
        if not valid:
            return responses
        try:
            numeric = np.concatenate([entry[1] for entry in valid])
            categorical = np.concatenate([entry[2] for entry in valid])
            feeds = {name: numeric[:, j : j + 1] for j, name in enumerate(self.numeric)}
            feeds.update({name: categorical[:, j : j + 1] for j, name in enumerate(self.categorical)})
            missing = np.isnan(numeric) & ~self.nan_allowed  # NaN only where the graph imputes it (user tables)
            bad = (np.isinf(numeric) | missing).any(axis=1) | (numeric[:, self.non_negative_index] < 0).any(axis=1)
            decoded = {}
            try:
                text = decode_utf8(categorical)
                decoded = {name: text[:, j : j + 1] for j, name in enumerate(self.categorical)}
            except UnicodeDecodeError:
                bad[:] = True  # rare: find the offending request(s) below, row range by row range
            if bad.any():
                valid, feeds, decoded = self._drop_bad_requests(valid, feeds, bad, responses)
                if not valid:
                    return responses
            feeds.update(decoded)
            results = self.session.run(self.output_names, feeds)
            total = len(results[0])
            results = [np.ascontiguousarray(r, dtype=np.float32).reshape(total, -1) for r in results]
            reasons = self._reasons(feeds, results[0][:, -1]) if self.top_k else None
            start = 0
            for i, _, _, rows in valid:
                outputs = [
                    pb_utils.Tensor(name, result[start : start + rows])
                    for name, result in zip(self.output_names, results, strict=True)
                ]
                if reasons is not None:
                    outputs.append(pb_utils.Tensor("reasons", reasons[start : start + rows]))
                responses[i] = pb_utils.InferenceResponse(output_tensors=outputs)
                start += rows
            if self.spool is not None:
                self._log_predictions(requests, valid, feeds, results, started, responses)
        except Exception as exc:  # never crash the stub: report the failure to each caller
            message = f"inference failed: {type(exc).__name__}: {exc}"
            for i, *_ in valid:
                if responses[i] is None:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
        return responses

    def _log_predictions(self, requests, valid, feeds, results, started, responses):
        """Append one line per answered request to the spool, in one write, before the responses go out.

        A failed write turns those answers into errors: the client retries, and nothing was acknowledged
        that the log does not hold."""
        try:
            log = self.log
            # Columns as JSON text (prediction_spool.column_json / ScrubbedColumns: the same line, less formatting).
            inputs = {name: log.column_json(feeds[name]) for name in self.numeric}
            inputs.update((name, self.scrubbed.column(name, feeds[name].ravel().tolist())) for name in self.categorical)
            outputs = {name: log.encode_column(r) for name, r in zip(self.output_names, results, strict=True)}
            answered = []  # [request id, rows, entity ids]: the batch's rows, request by request
            for i, _, _, rows in valid:
                request_id, entity_ids = log.request_identity(requests[i], rows)
                answered.append([request_id, rows, entity_ids])
            head = dict(self.log_head, time=log.utc_now(), latency_ms=round((time.perf_counter() - started) * 1e3, 3))
            self.spool.write(log.batch_line(head, answered, {}, outputs, json_inputs=inputs))
        except Exception as exc:
            error = pb_utils.TritonError(f"prediction log unavailable: {type(exc).__name__}: {exc}")
            for i, *_ in valid:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=error)

    def _drop_bad_requests(self, valid, feeds, bad, responses):
        """Answer requests holding a bad row with an error naming the field; keep the rest of the batch."""
        keep, keep_rows, start = [], [], 0
        for entry in valid:
            i, _, _, rows = entry
            message = self._value_error(feeds, start, start + rows) if bad[start : start + rows].any() else None
            if message is None:
                keep.append(entry)
                keep_rows.append(np.arange(start, start + rows))
            else:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=client_error(message))
            start += rows
        if not keep:
            return [], {}, {}
        index = np.concatenate(keep_rows)
        feeds = {name: array[index] for name, array in feeds.items()}
        decoded = {name: decode_utf8(feeds[name]) for name in self.categorical}
        return keep, feeds, decoded

    def _reasons(self, feeds, probabilities):
        """Ablate each field to its baseline in one stacked onnxruntime call; rank the probability deltas."""
        names = self.numeric + self.categorical
        rows = len(probabilities)
        stacked = {}
        for name in names:
            blocks = []
            for ablated in names:
                if ablated == name:
                    value = self.baseline[name]
                    fill = np.full((rows, 1), value, dtype=np.float32 if name in self.numeric else object)
                    blocks.append(fill)
                else:
                    blocks.append(feeds[name])
            stacked[name] = np.concatenate(blocks)
        first = self.session.run(self.output_names[:1], stacked)[0]
        ablated_probs = first.reshape(len(first), -1)[:, -1].reshape(len(names), rows)
        deltas = probabilities[None, :] - ablated_probs  # [field, row]: what this field's value adds
        out = np.empty((rows, 1), dtype=object)
        for r in range(rows):
            order = np.argsort(-deltas[:, r])
            positive = [(names[j], float(deltas[j, r])) for j in order[: self.top_k] if deltas[j, r] > 0]
            negative = [(names[j], float(deltas[j, r])) for j in order[::-1][: self.top_k] if deltas[j, r] < 0]
            out[r, 0] = json.dumps(
                {
                    "positive": [{"field": n, "effect": round(d, 6)} for n, d in positive],
                    "negative": [{"field": n, "effect": round(d, 6)} for n, d in negative],
                }
            ).encode()
        return out

    def finalize(self):
        self.session = None
        if self.profiler is not None:
            self.profiler.dump_stats(self.profile_path)
        if self.spool is not None:
            self.spool.close()
