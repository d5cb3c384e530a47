"""Triton Python-backend model: validate raw feature columns, run the ONNX graph in onnxruntime.

Copied into <repo>/<model>/<version>/ by `fulqrun_ml.serving.repository`. Runs inside Triton's Python
stub, so it imports only numpy, onnxruntime and the backend's `triton_python_backend_utils`.

Requests arrive in groups (dynamic batching). Each request is validated on its own, so one bad request
gets an error naming the field while the others in the same group are still answered; valid ones are
concatenated and scored in one onnxruntime call.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class RequestError(Exception):
    """A request's field is unusable; the message names the field."""


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = json.loads((version_dir / "feature_spec.json").read_text())
        self.numeric = [f["name"] for f in spec["numeric"]]
        self.non_negative = {f["name"] for f in spec["numeric"] if f.get("log1p")}
        self.categorical = [f["name"] for f in spec["categorical"]]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.output_name = config["output"][0]["name"]
        threads = int(config.get("parameters", {}).get("ort_intra_op_threads", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(version_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def _column(self, request, name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise RequestError(f"field '{name}': missing input")
        array = tensor.as_numpy()
        if array.ndim != 2 or array.shape[1] != 1:
            raise RequestError(f"field '{name}': expected shape [batch, 1], got {list(array.shape)}")
        return array

    def _feeds(self, request):
        feeds = {}
        rows = None
        for name in self.numeric + self.categorical:
            array = self._column(request, name)
            if rows is None:
                rows = array.shape[0]
            elif array.shape[0] != rows:
                raise RequestError(f"field '{name}': has {array.shape[0]} rows, other fields have {rows}")
            if name in self.numeric:
                if array.dtype != np.float32:
                    raise RequestError(f"field '{name}': expected FP32, got {array.dtype}")
                if not np.isfinite(array).all():
                    raise RequestError(f"field '{name}': contains NaN or infinite values")
                if name in self.non_negative and (array < 0).any():
                    raise RequestError(f"field '{name}': must be >= 0")
            else:
                try:
                    array = np.array(
                        [[v.decode("utf-8") if isinstance(v, bytes) else str(v)] for v in array[:, 0]],
                        dtype=object,
                    )
                except UnicodeDecodeError:
                    raise RequestError(f"field '{name}': is not valid UTF-8 text") from None
            feeds[name] = array
        if self.max_batch_size and rows > self.max_batch_size:
            raise RequestError(f"batch of {rows} rows exceeds max_batch_size {self.max_batch_size}")
        return feeds, rows

    def execute(self, requests):
        responses = [None] * len(requests)
        valid = []
        for i, request in enumerate(requests):
            try:
                valid.append((i, *self._feeds(request)))
            except RequestError as exc:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))
        if valid:
            try:
                merged = {name: np.concatenate([feeds[name] for _, feeds, _ in valid]) for name in valid[0][1]}
                probabilities = self.session.run([self.output_name], merged)[0].astype(np.float32)
                start = 0
                for i, _, rows in valid:
                    out = pb_utils.Tensor(self.output_name, probabilities[start : start + rows])
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                    start += rows
            except Exception as exc:  # never crash the stub: report the failure to each caller
                for i, _, _ in valid:
                    message = f"inference failed: {type(exc).__name__}: {exc}"
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
        return responses

    def finalize(self):
        self.session = None
