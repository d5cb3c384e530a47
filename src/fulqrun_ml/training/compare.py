"""`fulqrun-ml runs compare`: one table of runs - configs, metrics, W&B tags, registry versions - and a plot.

Sources, all local: each run directory's `run_info.json` / `metrics.json` (what training wrote), its offline
W&B run (tags and group as a team will see them after `wandb sync`), and the registry (which published
version came from which run, and its aliases).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.run_record import RunRecord, finished_runs
from fulqrun_ml.registry.store import get_version, list_versions
from fulqrun_ml.training.wandb_offline import offline_runs

# Config values worth a column: the choices researchers vary most.
PARAMS = {
    "model": "model.name",
    "lr": "task.module.optimizer.lr",
    "weight_decay": "task.module.optimizer.weight_decay",
    "dropout": "model.net.dropout",
    "batch_size": "data.batch_size",
    "seed": "seed",
}


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _registry_index(models_dir: Path) -> dict[str, str]:
    """run_dir -> "name vN [aliases]" for every published version (several versions may share a run)."""
    index: dict[str, str] = {}
    if not models_dir.is_dir():
        return index
    for model_dir in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        aliases = read_alias_state(models_dir, model_dir.name)
        for number in list_versions(models_dir, model_dir.name):
            version = get_version(models_dir, model_dir.name, number)
            lineage_file = version.path / "lineage.json"
            run_dir = json.loads(lineage_file.read_text()).get("run_dir") if lineage_file.is_file() else None
            tags = aliases.aliases_of(number)
            label = f"{model_dir.name} v{number}" + (f" [{', '.join(tags)}]" if tags else "")
            if run_dir:
                key = str(Path(run_dir).resolve())
                index[key] = f"{index[key]}; {label}" if key in index else label
    return index


def collect_runs(log_dir: Path, models_dir: Path, task: str | None = None, tag: str | None = None) -> pd.DataFrame:
    """One row per finished training run under `log_dir` (sweep trials included)."""
    registry = _registry_index(models_dir)
    rows = []
    for run_dir in finished_runs(log_dir, task):
        info = RunRecord.load(run_dir).to_dict()
        metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
        runs = offline_runs(run_dir / "wandb") if (run_dir / "wandb").is_dir() else []
        wandb_run = next((r for r in runs if r.run_id == info.get("wandb_run_id")), None)
        tags = wandb_run.tags if wandb_run else []
        if tag and tag not in tags:
            continue
        model = metrics.get("model", {})
        row = {
            "run": os.path.relpath(run_dir, log_dir),
            "task": info.get("task"),
            **{name: _get(info.get("config", {}), path) for name, path in PARAMS.items()},
            "auc": model.get("auc"),
            "log_loss": model.get("log_loss"),
            "ece": model.get("ece"),
            "rep_auc": metrics.get("rep", {}).get("auc"),
            "oracle_auc": metrics.get("oracle", {}).get("auc"),
            "epochs": info.get("epochs"),
            "data_hash": info.get("data_hash"),
            "wandb": info.get("wandb_run_id") or "",
            "tags": ",".join(tags),
            "version": registry.get(str(run_dir.resolve()), ""),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def plot_runs(runs: pd.DataFrame, path: Path) -> None:
    """Left: holdout AUC per run (rep and oracle as reference marks). Right: learning rate vs AUC by model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    order = runs.sort_values("auc")
    positions = range(len(order))
    left.barh(list(positions), order["auc"], color="tab:blue", label="model")
    left.scatter(order["rep_auc"], list(positions), marker="|", s=200, color="tab:red", label="rep")
    left.scatter(order["oracle_auc"], list(positions), marker="|", s=200, color="black", label="oracle")
    left.set_yticks(list(positions), [str(r)[-40:] for r in order["run"]], fontsize=7)
    left.set_xlim(max(0.0, float(order[["auc", "rep_auc"]].min().min()) - 0.05), 1.0)
    left.set_xlabel("holdout AUC")
    left.legend(loc="lower right")
    for model, group in runs.groupby("model", dropna=False):
        right.scatter(group["lr"], group["auc"], label=str(model))
    right.set_xscale("log")
    right.set_xlabel("learning rate")
    right.set_ylabel("holdout AUC")
    right.legend(title="model")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fulqrun-ml runs compare", description=__doc__)
    parser.add_argument("action", choices=["compare"])
    root = Path(os.environ.get("FULQRUN_ROOT", "."))
    parser.add_argument("--log-dir", default=str(root / "logs"))
    parser.add_argument("--models-dir", default=str(root / "models"))
    parser.add_argument("--task")
    parser.add_argument("--tag", help="only runs whose W&B tags include this")
    parser.add_argument("--out", default=str(root / "reports" / "runs_compare"), help="writes <out>.csv and <out>.png")
    args = parser.parse_args(argv)
    runs = collect_runs(Path(args.log_dir), Path(args.models_dir), args.task, args.tag)
    if runs.empty:
        print(f"no finished runs under {args.log_dir} matching task={args.task} tag={args.tag}")
        return 1
    table = Table(title=f"{len(runs)} runs")
    columns = ["run", "model", "lr", "dropout", "auc", "ece", "rep_auc", "oracle_auc", "epochs", "version", "tags"]
    for column in columns:
        table.add_column(column)
    for row in runs.sort_values("auc", ascending=False).itertuples():
        table.add_row(*(_cell(getattr(row, c)) for c in columns))
    Console(width=200).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out.with_suffix(".csv"), index=False)
    plot_runs(runs, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
