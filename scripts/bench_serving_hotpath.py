"""CPU time of the python-ort backend's hot path, part by part, without a server: where a batch's time goes.

Why: on the shared 2 cores the serving benchmark's throughput swings with other jobs, but the backend's own CPU
time per batch (time.process_time, in one process) is steady. So each part is measured here on the request
shapes the serving benchmark sends: 25 single-record packed requests (a dynamic batch at concurrency 64) and
16 requests of 64 records (a 1,024-row batch at 160x64). The parts are:
- `stub_bytes_triton` / `stub_bytes_fast`: the stub turning each request's BYTES tensor into an object array
  (Triton's `deserialize_bytes_tensor` vs serving/triton_bytes.py, which the backend installs);
- `execute`: the backend's execute() (validation, decoding, onnxruntime, responses, prediction log);
- `onnxruntime`: the session run alone, on the same feeds;
- `log_plain` / `log_fast`: the prediction-log line as before (scrub lists + json.dumps) vs now (column_json +
  ScrubbedColumns spliced by batch_line).
`execute` loads the real serving/python_ort/model.py with the real Triton utils module for (de)serialization;
only the request/response/tensor objects are small stand-ins (the real ones exist only inside the stub).

    .venv/bin/python scripts/bench_serving_hotpath.py --models-dir /tmp/p_models

Output: reports/bench_serving_hotpath.json (ms of CPU per batch, median of --repeats rounds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import TEMPLATE_DIR
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.serving.server import _pytriton_paths

SHAPES = {"c64_single_record": (25, 1), "160x64_rows": (16, 64)}


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class _Request:
    def __init__(self, tensors: list[_Tensor]) -> None:
        self._tensors = tensors

    def inputs(self) -> list[_Tensor]:
        return self._tensors

    def request_id(self) -> str:
        return ""

    def parameters(self) -> str:
        return "{}"


class _Response:
    def __init__(self, output_tensors: list, error: Exception | None = None) -> None:
        self.output_tensors, self.error = output_tensors, error


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpu_ms(fn: Callable[[], object], calls: int, repeats: int) -> float:
    rounds = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        rounds.append((time.process_time() - start) / calls * 1e3)
    return round(statistics.median(rounds), 4)


def _measure_shape(
    model: Any,
    module: types.ModuleType,
    triton: types.ModuleType,
    fast_bytes: Callable[[np.ndarray], np.ndarray],
    batches: list[tuple[np.ndarray, np.ndarray]],
    requests: list[_Request],
    rows: int,
    repeats: int,
) -> dict[str, float]:
    """Each part's CPU ms per batch for one request shape (see the module docstring)."""
    spool, numeric, categorical = model.log, model.numeric, model.categorical
    buffers = [np.frombuffer(triton.serialize_byte_tensor(c), dtype=np.uint8) for _, c in batches]
    decoded = module.decode_utf8(np.concatenate([c for _, c in batches]))
    values = np.concatenate([n for n, _ in batches])
    feeds = {name: values[:, j : j + 1] for j, name in enumerate(numeric)}
    feeds.update({name: decoded[:, j : j + 1] for j, name in enumerate(categorical)})
    vocabularies = {name: frozenset(model.scrubbed.fragments[name]) for name in categorical}
    head = {"model": "m", "version": 1, "time": spool.utc_now(), "latency_ms": 1.0}
    answered = [["r", rows, None]] * len(batches)
    outputs = {"probability": spool.encode_column(np.zeros((len(batches) * rows, 1), np.float32))}

    def log_plain() -> bytes:
        inputs = {name: spool.encode_column(feeds[name]) for name in numeric}
        for name in categorical:
            inputs[name] = spool.scrub_categorical(feeds[name].ravel().tolist(), vocabularies[name])
        return spool.batch_line(head, answered, inputs, outputs)

    def log_fast() -> bytes:
        inputs = {name: spool.column_json(feeds[name]) for name in numeric}
        inputs.update((name, model.scrubbed.column(name, feeds[name].ravel().tolist())) for name in categorical)
        return spool.batch_line(head, answered, {}, outputs, json_inputs=inputs)

    if json.loads(log_plain()) != json.loads(log_fast()):
        raise SystemExit("the two prediction-log lines differ")
    calls = 2000 if rows == 1 else 100
    return {
        "requests": len(batches),
        "rows": len(batches) * rows,
        "stub_bytes_triton": _cpu_ms(lambda: [triton.deserialize_bytes_tensor(b) for b in buffers], calls, repeats),
        "stub_bytes_fast": _cpu_ms(lambda: [fast_bytes(b) for b in buffers], calls, repeats),
        "execute": _cpu_ms(lambda: model._execute(requests), calls, repeats),
        "onnxruntime": _cpu_ms(lambda: model.session.run(model.output_names, feeds), calls, repeats),
        "log_plain": _cpu_ms(log_plain, calls, repeats),
        "log_fast": _cpu_ms(log_fast, calls, repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--model", default="deal_win")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="reports/bench_serving_hotpath.json")
    args = parser.parse_args(argv)
    version = get_version(Path(args.models_dir), args.model, args.version)
    _, root, _ = _pytriton_paths()
    triton = _load(root / "backends" / "python" / "triton_python_backend_utils.py", "triton_python_backend_utils")
    stub = types.ModuleType("triton_python_backend_utils")  # what model.py imports: real (de)serializers
    stub.__dict__.update(triton.__dict__)
    stub.Tensor, stub.InferenceResponse = _Tensor, _Response
    stub.TritonError = type("TritonError", (Exception,), {"INVALID_ARG": 3})
    sys.modules["triton_python_backend_utils"] = stub
    spec = json.loads((version.path / "feature_spec.json").read_text())
    numeric = [f["name"] for f in spec["numeric"]]
    categorical = [f["name"] for f in spec["categorical"]]
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fulqrun-hotpath-") as tmp:
        version_dir = Path(tmp) / args.model / "1"
        version_dir.mkdir(parents=True)
        for name in ("model.onnx", "feature_spec.json"):
            shutil.copy2(version.path / name, version_dir / name)
        for name in ("prediction_spool.py", "triton_bytes.py"):
            shutil.copy2(TEMPLATE_DIR / name, version_dir / name)
        shutil.copy2(TEMPLATE_DIR / "python_ort" / "model.py", version_dir / "model.py")
        fast_bytes = _load(version_dir / "triton_bytes.py", "hotpath_triton_bytes").deserialize_bytes_tensor
        module = _load(version_dir / "model.py", "hotpath_model")
        parameters = {
            "packed_numeric_columns": {"string_value": json.dumps(numeric)},
            "packed_categorical_columns": {"string_value": json.dumps(categorical)},
            "ort_intra_op_threads": {"string_value": "1"},
            "prediction_log_dir": {"string_value": str(Path(tmp) / "spool")},
        }
        config = {"max_batch_size": 1024, "output": [{"name": "probability"}], "parameters": parameters}
        model = module.TritonPythonModel()
        model.initialize(
            {
                "model_config": json.dumps(config),
                "model_repository": str(version_dir.parent),
                "model_version": "1",
                "model_name": args.model,
                "model_instance_name": f"{args.model}_0",
            }
        )
        for label, (count, rows) in SHAPES.items():
            batches = []
            for _ in range(count):
                values = (rng.random((rows, len(numeric))) * 10).astype(np.float32)
                text = [[rng.choice(spec["vocabularies"][n]).encode() for n in categorical] for _ in range(rows)]
                batches.append((values, np.array(text, dtype=object)))
            requests = [_Request([_Tensor("packed_numeric", n), _Tensor("packed_categorical", c)]) for n, c in batches]
            model._execute(requests)  # warm-up, and a check that every request is answered
            answers = model._execute(requests)
            if any(a.error is not None for a in answers):
                raise SystemExit(f"{label}: the backend refused a benchmark request")
            results[label] = _measure_shape(model, module, triton, fast_bytes, batches, requests, rows, args.repeats)
            print(label, results[label])
        model.finalize()
    report = {
        "benchmark": "serving_hotpath",
        "unit": "ms of CPU (time.process_time) per dynamic batch, median of repeats",
        "model": {"name": version.name, "version": version.version},
        "shapes": {k: {"requests": c, "rows_per_request": r} for k, (c, r) in SHAPES.items()},
        "baseline": "stub_bytes_triton and log_plain: the code before this change, on the same buffers and rows",
        "machine": machine_info(load_average_1m_5m_15m_after=[round(x, 2) for x in os.getloadavg()]),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
