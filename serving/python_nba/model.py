"""Triton Python-backend model `<name>_actions`: raw deal states in, the top-k next best actions out.

Copied into <repo>/<model>/<version>/ by `fulqrun_ml.serving.repository` (variant python-nba, config from
`fulqrun_ml.serving.nba`). Runs inside Triton's Python stub, so it imports only numpy, onnxruntime, the standard
library and the backend's `triton_python_backend_utils`; the ranking is nba_rank.py next to this file.

Per merged batch: one onnxruntime call of the version's graph (raw columns -> `uplift`, `uplift_sd` per arm), one
of the FeatureSpec encoder (raw columns -> `continuous`, `categorical`) for the propensity models that say which
arms reps have used for similar deals (the support mask), then the ranking. The answer per row is a JSON string:
the k best supported actions, each with its components, uplift in win probability and its 95% interval, uplift in
expected revenue (x the deal's value) and a plain reason.

Every request is validated on its own (the same rules as `recommend.sdk.check_states`: numbers finite and >= 0,
non-empty text, an open stage, k >= 1), so one bad request gets an error naming the field while the others in the
same dynamic batch are answered. The prediction log does not cover this endpoint yet (`<name>` logs its uplifts).
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def load_local_module(filename, module_name):
    """A module from this version directory, loaded by path (the stub's sys.path does not have it)."""
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RequestError(Exception):
    """A request's field is unusable; the message names the field."""


def client_error(message):
    """A 400 Bad Request (INVALID_ARG), not Triton's default 500: the caller sent something wrong."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        table = json.loads((version_dir / "nba_serving.json").read_text())
        self.numeric = table["numeric"]
        self.categorical = table["categorical"]
        self.open_stages = frozenset(table["open_stages"])
        self.cardinalities = table["cardinalities"]
        self.propensity_models = json.loads((version_dir / "propensity.json").read_text())
        self.max_batch_size = int(config.get("max_batch_size", 0))
        rank = load_local_module("nba_rank.py", "fulqrun_nba_rank")
        self.design = rank.design
        self.space = rank.ActionSpace(table["components"], table["support_floor"], table["z"])
        threads = int(config.get("parameters", {}).get("ort_intra_op_threads", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(version_dir / "model.onnx"), options, providers=providers)
        self.encoder = ort.InferenceSession(str(version_dir / "encoder.onnx"), options, providers=providers)

    def _request(self, request):
        """One request's columns, checked: (numeric {name: float32 [rows, 1]}, text {name: object [rows, 1]}, k)."""
        tensors = {tensor.name(): tensor for tensor in request.inputs()}
        rows = None
        numeric, text = {}, {}
        for name in [*self.numeric, *self.categorical, "k"]:
            if name not in tensors:
                raise RequestError(f"field '{name}': missing input")
            array = tensors[name].as_numpy()
            if array.ndim != 2 or array.shape[1] != 1:
                raise RequestError(f"field '{name}': expected shape [batch, 1], got {list(array.shape)}")
            if rows is None:
                rows = array.shape[0]
            elif array.shape[0] != rows:
                raise RequestError(f"field '{name}': has {array.shape[0]} rows, other fields have {rows}")
            if name in self.categorical:
                try:
                    values = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
                except UnicodeDecodeError:
                    raise RequestError(f"field '{name}': is not valid UTF-8 text") from None
                if not all(values):
                    raise RequestError(f"field '{name}': expected a non-empty string")
                if name == "stage" and not self.open_stages.issuperset(values):
                    bad = next(v for v in values if v not in self.open_stages)
                    raise RequestError(f"field 'stage': {bad!r} is not an open stage {sorted(self.open_stages)}")
                text[name] = np.array(values, dtype=object).reshape(-1, 1)
            elif name == "k":
                if array.dtype != np.int64 or (array < 1).any():
                    raise RequestError("field 'k': expected a positive INT64 per row")
                k = array.ravel()
            else:
                if array.dtype != np.float32:
                    raise RequestError(f"field '{name}': expected FP32, got {array.dtype}")
                if not np.isfinite(array).all() or (array < 0).any():
                    raise RequestError(f"field '{name}': expected a finite number >= 0")
                numeric[name] = array
        if self.max_batch_size and rows > self.max_batch_size:
            raise RequestError(f"batch of {rows} rows exceeds max_batch_size {self.max_batch_size}")
        return numeric, text, k

    def execute(self, requests):
        responses = [None] * len(requests)
        valid = []  # (request index, numeric, text, k)
        for i, request in enumerate(requests):
            try:
                valid.append((i, *self._request(request)))
            except RequestError as exc:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=client_error(str(exc)))
        if not valid:
            return responses
        try:
            feeds = {name: np.concatenate([entry[1][name] for entry in valid]) for name in self.numeric}
            feeds.update({name: np.concatenate([entry[2][name] for entry in valid]) for name in self.categorical})
            k = np.concatenate([entry[3] for entry in valid])
            uplift, sd = self.session.run(["uplift", "uplift_sd"], feeds)
            continuous, categorical = self.encoder.run(["continuous", "categorical"], feeds)
            # float64 from here on, exactly like the in-process SDK (recommend/sdk.py) ranks.
            uplift, sd = uplift.astype(np.float64), sd.astype(np.float64)
            x = self.design(continuous, categorical, self.cardinalities)
            support = self.space.supported(self.space.propensities(x, self.propensity_models))
            facts = [
                {
                    "value": float(feeds["value"][r, 0]),
                    "meddpicc_gaps": float(feeds["meddpicc_gaps"][r, 0]),
                    "stage": feeds["stage"][r, 0],
                    "size": feeds["size"][r, 0],
                    "industry": feeds["industry"][r, 0],
                }
                for r in range(len(k))
            ]
            ranked = self.space.rank(uplift, sd, support, facts, int(k.max()))
            answers = np.array(
                [json.dumps(actions[: int(n)]).encode() for actions, n in zip(ranked, k, strict=True)], dtype=object
            ).reshape(-1, 1)
            start = 0
            for i, _, _, request_k in valid:
                rows = len(request_k)
                tensor = pb_utils.Tensor("recommendations", answers[start : start + rows])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
                start += rows
        except Exception as exc:  # never crash the stub: report the failure to each caller
            message = f"inference failed: {type(exc).__name__}: {exc}"
            for i, *_ in valid:
                if responses[i] is None:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
        return responses

    def finalize(self):
        self.session = None
        self.encoder = None
