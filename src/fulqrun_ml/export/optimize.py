"""ONNX Runtime optimisation of an exported graph, and INT8 dynamic quantisation guarded by holdout AUC.

Two artifacts, both optional companions of a version's `model.onnx` (which stays the reference):
- `model.optimized.onnx`: the graph after ORT's own rewrites (constant folding, Gemm/activation and
  LayerNorm fusions, ...), saved with `SessionOptions.optimized_model_filepath`, so a host loads it
  without re-optimising. Level "extended" (default) keeps it portable across x86 CPUs; "all" adds
  hardware-specific layouts and is only valid on the machine type that wrote it.
- `model.int8.onnx`: `onnxruntime.quantization.quantize_dynamic` of the network part only (MatMul/Gemm
  nodes under the `net/` prefix that export gives the network; the preprocessing is left exact).
  Quantisation changes predictions, so its holdout AUC is measured against the float graph and a
  model that loses more than `max_auc_drop` (0.002) is refused: the file is removed and
  `QuantizationRejectedError` says by how much.

Both are checked on the same holdout rows; the returned report holds AUCs, max |Δprobability| and sizes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnxruntime.quantization import QuantType, quantize_dynamic
from sklearn.metrics import roc_auc_score

from fulqrun_ml.data.snapshot_files import read_snapshot, snapshot_exists
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.store import ModelVersion

log = logging.getLogger(__name__)
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
MAX_AUC_DROP = 0.002
NETWORK_PREFIX = "net/"  # export_onnx merges the network under this prefix
QUANTIZED_OPS = ("MatMul", "Gemm")
INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")
OPTIMIZED_FILE = "model.optimized.onnx"
QUANTIZED_FILE = "model.int8.onnx"


class QuantizationRejectedError(FulqrunMLError):
    """The INT8 graph loses too much holdout AUC; `report` holds the measurements."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def optimize_graph(model_path: Path, output_path: Path, level: str = "extended") -> Path:
    """Let ORT rewrite the graph at `level` and save the result (what a session would run)."""
    if level not in LEVELS:
        raise FulqrunMLError(f"unknown graph optimisation level '{level}'; choose one of {sorted(LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.optimized_model_filepath = str(output_path)
    ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    if not Path(output_path).is_file():
        raise FulqrunMLError(f"onnxruntime did not write the optimised graph to {output_path}")
    return Path(output_path)


def network_nodes(model: onnx.ModelProto) -> list[str]:
    """The network's MatMul/Gemm nodes: what dynamic quantisation may touch."""
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name.startswith(NETWORK_PREFIX)]


def quantize_network(model_path: Path, output_path: Path) -> list[str]:
    """INT8 dynamic quantisation (int8 weights per channel, activations quantised per batch at run time)
    of the network's MatMul/Gemm nodes. Returns the names of the integer nodes it wrote.

    The quantiser first rewrites each Gemm as MatMul + Add under a new name, so the network is selected
    by excluding every other MatMul/Gemm rather than by listing the network's (soon renamed) nodes."""
    model = onnx.load(str(model_path))
    if not network_nodes(model):
        raise FulqrunMLError(f"{model_path}: no {'/'.join(QUANTIZED_OPS)} nodes under '{NETWORK_PREFIX}' to quantise")
    outside = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and not n.name.startswith(NETWORK_PREFIX)]
    quantize_dynamic(
        Path(model_path),
        Path(output_path),
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_exclude=outside,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    written = [n.name for n in onnx.load(str(output_path)).graph.node if n.op_type in INTEGER_OPS]
    if not written:
        Path(output_path).unlink(missing_ok=True)
        raise FulqrunMLError(f"{model_path}: quantize_dynamic left every network node in float; nothing to gain")
    return written


def holdout_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    if len(np.unique(labels)) < 2:
        raise FulqrunMLError("holdout labels have a single class: AUC is undefined, cannot judge the graph")
    return float(roc_auc_score(labels, probabilities))


def optimize_onnx(
    model_path: Path,
    spec: FittedFeatureSpec,
    holdout: pd.DataFrame,
    out_dir: Path,
    label_column: str = "label",
    quantize: bool = False,
    level: str = "extended",
    max_auc_drop: float = MAX_AUC_DROP,
) -> dict[str, Any]:
    """Write the optimised (and, if asked, the INT8) graph of `model_path` into `out_dir`, checked on
    `holdout`. Raises QuantizationRejectedError (leaving no INT8 file) if INT8 drops AUC by > max_auc_drop."""
    if label_column not in holdout.columns:
        raise FulqrunMLError(f"holdout has no '{label_column}' column to measure AUC")
    model_path, out_dir = Path(model_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = holdout[label_column].to_numpy()
    reference = onnx_probabilities(model_path, spec, holdout)
    base_auc = holdout_auc(reference, labels)

    optimized = optimize_graph(model_path, out_dir / OPTIMIZED_FILE, level)
    optimized_p = onnx_probabilities(optimized, spec, holdout)
    report: dict[str, Any] = {
        "source": str(model_path),
        "holdout_rows": len(holdout),
        "auc": round(base_auc, 6),
        "size_bytes": model_path.stat().st_size,
        "optimized": {
            "path": str(optimized),
            "level": level,
            "auc": round(holdout_auc(optimized_p, labels), 6),
            "max_abs_diff": float(np.max(np.abs(optimized_p - reference))),
            "size_bytes": optimized.stat().st_size,
        },
    }
    if not quantize:
        return report

    quantized = out_dir / QUANTIZED_FILE
    integer_nodes = quantize_network(model_path, quantized)
    quantized_p = onnx_probabilities(quantized, spec, holdout)
    auc = holdout_auc(quantized_p, labels)
    drop = base_auc - auc
    report["quantized"] = {
        "path": str(quantized),
        "weight_type": "int8 (per channel), dynamic activations",
        "integer_nodes": integer_nodes,
        "auc": round(auc, 6),
        "auc_drop": round(drop, 6),
        "max_auc_drop": max_auc_drop,
        "max_abs_diff": float(np.max(np.abs(quantized_p - reference))),
        "size_bytes": quantized.stat().st_size,
        "accepted": bool(drop <= max_auc_drop),
    }
    if drop > max_auc_drop:
        quantized.unlink(missing_ok=True)
        report["quantized"]["path"] = None
        raise QuantizationRejectedError(
            f"INT8 quantisation drops holdout AUC by {drop:.4f} ({base_auc:.4f} -> {auc:.4f}), more than the "
            f"allowed {max_auc_drop}; the quantised graph was not kept",
            report,
        )
    log.info("INT8 graph accepted: AUC %.4f -> %.4f (drop %.4f)", base_auc, auc, drop)
    return report


def optimize_version(
    version: ModelVersion,
    out_dir: Path,
    holdout: pd.DataFrame | None = None,
    quantize: bool = False,
    level: str = "extended",
    max_auc_drop: float = MAX_AUC_DROP,
) -> dict[str, Any]:
    """`optimize_onnx` for a published version; the holdout defaults to its training run's holdout.parquet.

    Published versions are immutable, so the files go to `out_dir` (a staging directory of the next
    publish, or anywhere a host reads them from), never into the version directory itself."""
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    if holdout is None:
        run_dir = json.loads((version.path / "lineage.json").read_text()).get("run_dir")
        path = Path(run_dir or "") / "holdout.parquet"
        if not run_dir or not snapshot_exists(path):
            raise FulqrunMLError(f"{version.name} v{version.version}: its holdout ({path}) is gone; pass holdout=")
        holdout = read_snapshot(path)
    report = optimize_onnx(version.path / "model.onnx", spec, holdout, out_dir, "label", quantize, level, max_auc_drop)
    report["version"] = {"name": version.name, "version": version.version}
    return report
