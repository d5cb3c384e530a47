"""What a training run adds to its W&B run beyond Lightning's per-epoch metrics.

- tags by task, model and experiment (the group, the task, comes from `configs/logger/wandb.yaml`);
- the holdout table: one row per holdout snapshot with ids, stage, label and the model / rep / oracle
  probabilities. Built from an allow-list of columns, so contact names, emails or phones can never
  reach it even if the snapshot frame grows such columns;
- the reliability and lift plots as images;
- two artifacts: the dataset (type "dataset", named by the data hash: a manifest of the snapshot set,
  no rows) and the trained model (type "model": backbone weights, net config, FeatureSpec, calibration,
  metrics: exactly what `fulqrun-ml export` turns into a registry version).

Why artifacts are logged here, at the end of training, and not by the export step: W&B runs offline by
default, and offline W&B can neither `use_artifact` (it raises "Cannot use artifact when in offline
mode") nor resume a run (resuming writes a second `offline-run-*` directory with the same id). So the
training run logs both artifacts as its outputs; the model artifact's metadata names the dataset
artifact and data hash, and the registry version's lineage names both artifacts (`wandb_artifacts`).
After `wandb sync` the W&B lineage graph shows dataset and model hanging off the same training run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import wandb

log = logging.getLogger(__name__)
HOLDOUT_TABLE_KEY = "holdout/predictions"
# Non-personal columns only: ids are random UUIDs, the rest are deal facts and scores.
HOLDOUT_ID_COLUMNS = ("opportunity_id", "as_of", "stage", "label")
# Everything a version needs to be rebuilt from the artifact alone (forecasts: conformal offsets, series ids).
MODEL_ARTIFACT_FILES = (
    "net_state.pt",
    "net_config.json",
    "feature_spec.json",
    "calibration.json",
    "metrics.json",
    "target.json",
    "conformal.json",
    "series_index.json",
    "sequence_vocab.json",
)


def experiment_name(default: str = "none") -> str:
    """The `experiment=` choice of a Hydra CLI run (compose-based callers have none: `default`)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get("experiment") or default)
    return default


def tag_run(run: Any, task: str, model: str, experiment: str) -> None:
    """Make runs filterable by task, model and experiment, whatever the logger config already set."""
    tags = [*run.tags, task, model, f"experiment:{experiment}"]
    run.tags = tuple(dict.fromkeys(tags))
    run.config.update({"experiment": experiment}, allow_val_change=True)


def holdout_table(holdout: pd.DataFrame, scores: dict[str, np.ndarray]) -> wandb.Table:
    """Per-row holdout predictions from allow-listed columns (see HOLDOUT_ID_COLUMNS)."""
    frame = pd.DataFrame({c: holdout[c] for c in HOLDOUT_ID_COLUMNS if c in holdout})
    if "as_of" in frame:
        frame["as_of"] = frame["as_of"].astype(str)
    for name, probs in scores.items():
        frame[f"{name}_probability"] = np.asarray(probs, dtype=np.float64)
    return wandb.Table(dataframe=frame.reset_index(drop=True))


def log_holdout_report(run: Any, holdout: pd.DataFrame, scores: dict[str, np.ndarray], plots: dict[str, Path]) -> None:
    run.log(
        {
            HOLDOUT_TABLE_KEY: holdout_table(holdout, scores),
            "holdout/calibration_plot": wandb.Image(str(plots["calibration"])),
            "holdout/lift_plot": wandb.Image(str(plots["lift"])),
        }
    )


def dataset_artifact_name(task: str, data_hash: str) -> str:
    return f"{task}-snapshots-{data_hash}"


def log_artifacts(run: Any, run_dir: Path, summary: dict[str, Any], metrics: dict[str, Any]) -> dict[str, str]:
    """Log the dataset and model artifacts; returns their names for the run's lineage."""
    task, data_hash = summary["task"], summary["data_hash"]
    dataset_name = dataset_artifact_name(task, data_hash)
    manifest = {
        "data_hash": data_hash,
        "task": task,
        "sizes": summary.get("sizes"),
        "data_window": summary.get("data_window"),
        "data_config": (summary.get("config") or {}).get("data"),
    }
    dataset = wandb.Artifact(dataset_name, type="dataset", metadata=manifest)
    with dataset.new_file("manifest.json") as handle:
        handle.write(json.dumps(manifest, indent=2, default=str))
    run.log_artifact(dataset, aliases=["latest", f"data-{data_hash}"])

    model_name = f"{task}-{summary['model']}"
    model = wandb.Artifact(
        model_name,
        type="model",
        metadata={
            "dataset_artifact": dataset_name,
            "data_hash": data_hash,
            "wandb_run_id": run.id,
            "git_commit": summary.get("git_commit"),
            "parent": summary.get("parent"),
            "net_config": summary.get("net_config"),
            "holdout": metrics.get("model"),
        },
    )
    for name in MODEL_ARTIFACT_FILES:
        if (run_dir / name).is_file():
            model.add_file(str(run_dir / name), name=name)
    run.log_artifact(model, aliases=["latest", f"data-{data_hash}", f"run-{run.id}"])
    log.info("logged W&B artifacts %s (dataset) and %s (model)", dataset_name, model_name)
    return {"dataset": f"{dataset_name}:data-{data_hash}", "model": f"{model_name}:run-{run.id}"}
