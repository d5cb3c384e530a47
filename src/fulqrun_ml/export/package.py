"""`fulqrun-ml export`: turn a training run directory into a published model version.

Reads what `train` left (net config + weights, fitted FeatureSpec, holdout rows, metrics, lineage),
exports the single raw-columns ONNX graph, checks parity on the holdout, and publishes
`models/<name>/<version>/` atomically with:
  model.onnx          preprocessing + network, raw feature columns in, `probability` out
  feature_spec.json   the fitted encoders (also used by the server to validate inputs)
  metrics.json        holdout metrics (model, rep, oracle) and export parity
  lineage.json        config, data hash, git commit, W&B run id, source run dir
  metadata.json       written last by the registry: name, version, time, inputs/outputs, parity
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.export.onnx_export import OUTPUT_NAME, check_parity, export_onnx
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.store import ModelVersion, publish_version
from fulqrun_ml.tasks.binary import predict_probabilities

RUN_FILES = ("run_info.json", "net_state.pt", "feature_spec.json", "holdout.parquet", "metrics.json")
LINEAGE_KEYS = (
    "task",
    "model",
    "config",
    "net_config",
    "data_hash",
    "git_commit",
    "wandb_run_id",
    "run_dir",
    "sizes",
    "epochs",
)


def load_trained_net(run_dir: Path, spec: FittedFeatureSpec) -> torch.nn.Module:
    info = json.loads((run_dir / "run_info.json").read_text())
    net = instantiate(
        info["net_config"],
        n_continuous=len(spec.spec.numeric),
        cardinalities=spec.cardinalities,
        _convert_="all",
    )
    net.load_state_dict(torch.load(run_dir / "net_state.pt", weights_only=True))
    return net.eval()


def load_calibration(run_dir: Path) -> dict[str, Any]:
    """The run's post-hoc calibration; runs from before calibration existed export uncalibrated (T = 1)."""
    path = run_dir / "calibration.json"
    return json.loads(path.read_text()) if path.is_file() else {"method": "none", "temperature": 1.0}


def export_run(run_dir: Path, models_dir: Path, name: str) -> tuple[ModelVersion, float]:
    """Export, check parity, publish. Returns the new version and the parity max abs diff."""
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise FulqrunMLError(f"{run_dir} is not a finished training run (missing {', '.join(missing)})")
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    net = load_trained_net(run_dir, spec)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    calibration = load_calibration(run_dir)
    temperature = float(calibration["temperature"])
    graph = export_onnx(net, spec, temperature)
    parity = check_parity(graph, predict_probabilities(net, spec.encode(holdout), temperature), spec, holdout)

    info = json.loads((run_dir / "run_info.json").read_text())
    metrics: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text())
    metrics["export_parity_max_abs_diff"] = parity

    def write(tmp: Path) -> None:
        (tmp / "model.onnx").write_bytes(graph.SerializeToString())
        shutil.copy(run_dir / "feature_spec.json", tmp / "feature_spec.json")
        (tmp / "calibration.json").write_text(json.dumps(calibration, indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        lineage = {k: info.get(k) for k in LINEAGE_KEYS}
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2, default=str))

    metadata = {
        "task": info["task"],
        "inputs": [{"name": f.name, "dtype": "float32"} for f in spec.spec.numeric]
        + [{"name": f.name, "dtype": "string"} for f in spec.spec.categorical],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32"}],
        "holdout_auc": metrics["model"]["auc"],
        "parity_max_abs_diff": parity,
        "calibration": calibration,
        "data_hash": info["data_hash"],
        "git_commit": info["git_commit"],
        "wandb_run_id": info["wandb_run_id"],
    }
    return publish_version(models_dir, name, write, metadata), parity
