"""Lifecycle-stage and CSAT report: learned stage transitions and CSAT predictions against the simulator's truth.

Per seed, a simulated CRM with the lifecycle story is trained through the same spine as churn
(`train task=lifecycle_stage`, `train task=csat`), exported to ONNX (parity-checked, published to a scratch
registry) and the *exported graph* scores the holdout. Then:
- transitions: the learned matrix (mean predicted next-stage distribution per current stage) and the baselines'
  (empirical transition counts of the training split, persistence) against the TRUE matrix (mean of the story's
  true transition probabilities over the same holdout rows): mean abs error per cell; and per row, the total
  variation distance between each predicted distribution and that row's true one (what the drivers add);
- CSAT: MAE and Spearman against the true expected score, next to the account's last score and the training mean.
Intervals are t-intervals over seeds (`leaderboard_stats.t_interval`).

    .venv/bin/python scripts/bench_lifecycle.py --seeds 1 2 3 --max-epochs 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from scipy.stats import spearmanr

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.data.simulator_lifecycle import STAGES
from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.export.multiclass_export import CLASS_PROBABILITY
from fulqrun_ml.export.onnx_export import PREDICTION_OUTPUT, onnx_outputs
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.training.train import train

FROM_STAGES = STAGES[:-1]  # churned is absorbing: no row starts there
ORACLE = "oracle_probability__"
MATRIX_SOURCES = {"model": None, "empirical": "empirical__", "persistence": "persistence__"}


def _train_and_export(task: str, seed: int, max_epochs: int, root: Path, overrides: list[str]) -> dict[str, Any]:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"task={task}",
                f"seed={seed}",
                f"data.source.seed={seed}",
                f"trainer.max_epochs={max_epochs}",
                "trainer.enable_progress_bar=false",
                "logger=none",
                f"paths.output_dir={root / task}",
                f"paths.root_dir={root}",
                *overrides,
            ],
        )
    started = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - started
    run_dir = Path(result["run_dir"])
    version, parity = export_run(run_dir, root / "models", task)
    holdout = read_snapshot(run_dir / "holdout.parquet")
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    graph = (version.path / "model.onnx").read_bytes()
    output = CLASS_PROBABILITY if task == "lifecycle_stage" else PREDICTION_OUTPUT
    scores = onnx_outputs(graph, spec, holdout, output)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"holdout": holdout, "scores": scores, "metrics": metrics, "parity": parity, "train_seconds": seconds}


def matrix(probabilities: np.ndarray, from_stage: pd.Series) -> np.ndarray:
    """[from, to] mean next-stage distribution of the rows starting in each non-churned stage."""
    frame = pd.DataFrame(probabilities, columns=list(STAGES)).assign(stage_now=from_stage.to_numpy())
    return frame.groupby("stage_now")[list(STAGES)].mean().reindex(list(FROM_STAGES)).to_numpy()


def transition_seed(run: dict[str, Any]) -> dict[str, Any]:
    holdout = run["holdout"]
    truth_rows = holdout[[f"{ORACLE}{s}" for s in STAGES]].to_numpy()
    true_matrix = matrix(truth_rows, holdout["stage_now"])
    out: dict[str, Any] = {"true_matrix": true_matrix.tolist(), "rows": len(holdout)}
    for who, prefix in MATRIX_SOURCES.items():
        rows = run["scores"].reshape(len(holdout), -1) if prefix is None else holdout[
            [f"{prefix}{s}" for s in STAGES]].to_numpy()  # fmt: skip
        learned = matrix(rows, holdout["stage_now"])
        out[who] = {
            "matrix": learned.tolist(),
            "cell_mae": float(np.nanmean(np.abs(learned - true_matrix))),
            "row_tv_distance": float(0.5 * np.abs(rows - truth_rows).sum(axis=1).mean()),
            **{k: v for k, v in run["metrics"][who].items() if k != "ece_by_class"},
        }
    out["oracle"] = {k: v for k, v in run["metrics"]["oracle"].items() if k != "ece_by_class"}
    out["model"]["ece_by_class"] = run["metrics"]["model"]["ece_by_class"]
    out["export_parity_max_abs_diff"], out["train_seconds"] = run["parity"], run["train_seconds"]
    return out


def csat_seed(run: dict[str, Any]) -> dict[str, Any]:
    holdout = run["holdout"]
    truth = holdout["oracle_probability"].to_numpy(dtype=float)  # the datamodule's oracle column: expected score
    observed = holdout["label"].to_numpy(dtype=float)
    predictions = {
        "model": run["scores"],
        "last_score": holdout["csat_last_score"].to_numpy(dtype=float),
        "train_mean": holdout["csat_train_mean"].to_numpy(dtype=float),
        "oracle": truth,
    }
    out: dict[str, Any] = {"rows": len(holdout), "export_parity_max_abs_diff": run["parity"]}
    for who, values in predictions.items():
        # a constant prediction (the training mean) has no rank order: undefined, written as null
        spearman = spearmanr(values, truth).statistic if np.std(values) > 0 else None
        out[who] = {
            "mae_vs_true_expected": float(np.abs(values - truth).mean()),
            "spearman_vs_true_expected": None if spearman is None else float(spearman),
            "mae_vs_observed": float(np.abs(values - observed).mean()),
        }
    out["train_seconds"] = run["train_seconds"]
    return out


def _interval(values: list[float | None]) -> dict[str, Any]:
    """t-interval over seeds; null with a reason where a seed's value is undefined (None, or NaN in old reports)."""
    if any(v is None or not np.isfinite(v) for v in values):
        return {"mean": None, "std": None, "ci95": None, "n": len(values), "reason": "undefined (constant prediction)"}
    return t_interval(values)


def summarise(per_seed: list[dict[str, Any]], who: tuple[str, ...], metrics: tuple[str, ...]) -> dict[str, Any]:
    return {w: {m: _interval([s[w][m] for s in per_seed]) for m in metrics if m in per_seed[0][w]} for w in who}


def run_study(seeds: list[int], max_epochs: int, overrides: list[str]) -> dict[str, Any]:
    transitions, csat = [], []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            transitions.append(
                transition_seed(_train_and_export("lifecycle_stage", seed, max_epochs, Path(tmp), overrides))
            )
            csat.append(csat_seed(_train_and_export("csat", seed, max_epochs, Path(tmp), overrides)))
    return assemble(transitions, csat, seeds, max_epochs, overrides)


def assemble(
    transitions: list[dict[str, Any]],
    csat: list[dict[str, Any]],
    seeds: list[int],
    max_epochs: int,
    overrides: list[str],
) -> dict[str, Any]:
    """The report from per-seed results (of one study, or of one-seed studies run side by side: `merge`)."""
    stage_metrics = ("cell_mae", "row_tv_distance", "log_loss", "macro_f1", "classwise_ece", "accuracy")
    csat_metrics = ("mae_vs_true_expected", "spearman_vs_true_expected", "mae_vs_observed")
    return {
        "machine": machine_info(),
        "settings": {"seeds": seeds, "max_epochs": max_epochs, "overrides": overrides, "stages": list(STAGES)},
        "transitions": {
            "summary": summarise(
                per_seed=transitions, who=("model", "empirical", "persistence"), metrics=stage_metrics
            ),
            "oracle": summarise(transitions, ("oracle",), ("log_loss", "macro_f1", "classwise_ece"))["oracle"],
            "mean_true_matrix": np.mean([t["true_matrix"] for t in transitions], axis=0).tolist(),
            "mean_model_matrix": np.mean([t["model"]["matrix"] for t in transitions], axis=0).tolist(),
            "mean_empirical_matrix": np.mean([t["empirical"]["matrix"] for t in transitions], axis=0).tolist(),
            "per_seed": transitions,
        },
        "csat": {
            "summary": summarise(csat, ("model", "last_score", "train_mean", "oracle"), csat_metrics),
            "per_seed": csat,
        },
    }


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from one-seed (or any) reports of the same settings, seeds in order, intervals recomputed."""
    settings = [{k: v for k, v in r["settings"].items() if k != "seeds"} for r in reports]
    if any(s != settings[0] for s in settings):
        raise ValueError(f"reports differ in settings: {settings}")
    seeds = [seed for r in reports for seed in r["settings"]["seeds"]]
    transitions = [t for r in reports for t in r["transitions"]["per_seed"]]
    csat = [c for r in reports for c in r["csat"]["per_seed"]]
    for seed in csat:  # reports written before undefined Spearman was null held NaN
        for row in seed.values():
            if isinstance(row, dict) and row.get("spearman_vs_true_expected", 0.0) != row.get(
                "spearman_vs_true_expected", 0.0
            ):
                row["spearman_vs_true_expected"] = None
    return assemble(transitions, csat, seeds, settings[0]["max_epochs"], settings[0]["overrides"])


def verdict(report: dict[str, Any]) -> list[str]:
    """Model vs empirical transition counts per metric: the mean gap and whether the seeds' intervals separate."""
    summary = report["transitions"]["summary"]
    lines = []
    for metric, label in (("cell_mae", "cell MAE"), ("row_tv_distance", "row TV distance"), ("log_loss", "log loss")):
        model, empirical = summary["model"][metric], summary["empirical"][metric]
        gap = model["mean"] - empirical["mean"]
        apart = (
            model["ci95"] is not None
            and empirical["ci95"] is not None
            and (model["ci95"][1] < empirical["ci95"][0] or model["ci95"][0] > empirical["ci95"][1])
        )
        word = "beats" if gap < 0 else "loses to"
        lines.append(
            f"- {label}: model {model['mean']:.4f} vs empirical {empirical['mean']:.4f}: {word} it by "
            f"{abs(gap):.4f} ({'intervals apart' if apart else 'intervals overlap'})"
        )
    return lines


def _fmt(cell: dict[str, Any]) -> str:
    if cell["mean"] is None:
        return cell.get("reason", "undefined")
    if cell["ci95"] is None:
        return f"{cell['mean']:.4f}"
    return f"{cell['mean']:.4f} [{cell['ci95'][0]:.4f}, {cell['ci95'][1]:.4f}]"


def render_markdown(report: dict[str, Any]) -> str:
    t, c = report["transitions"], report["csat"]
    lines = [
        "# Customer lifecycle stage and CSAT vs the simulator's truth",
        "",
        f"Seeds {report['settings']['seeds']}, {report['settings']['max_epochs']} epochs max; mean [95% t-interval].",
        "Scores come from the exported ONNX graph on the holdout (time split); scripts/bench_lifecycle.py made it.",
        "",
        "## Stage transitions (30 days ahead)",
        "",
        "| who | cell MAE vs true matrix | row TV distance to truth | log loss | macro-F1 | classwise ECE |",
        "|---|---|---|---|---|---|",
    ]
    for who, row in t["summary"].items():
        lines.append(
            f"| {who} | {_fmt(row['cell_mae'])} | {_fmt(row['row_tv_distance'])} | {_fmt(row['log_loss'])} | "
            f"{_fmt(row['macro_f1'])} | {_fmt(row['classwise_ece'])} |"
        )
    o = t["oracle"]
    lines += [f"| oracle (true probabilities) | 0 | 0 | {_fmt(o['log_loss'])} | {_fmt(o['macro_f1'])} | "
              f"{_fmt(o['classwise_ece'])} |", ""]  # fmt: skip
    for title, key in (("True", "mean_true_matrix"), ("Learned (model)", "mean_model_matrix")):
        lines += [f"{title} transition matrix (rows: from, columns: to; mean over seeds)", ""]
        lines += ["| from \\ to | " + " | ".join(STAGES) + " |", "|---" * (len(STAGES) + 1) + "|"]
        for stage, values in zip(FROM_STAGES, report["transitions"][key], strict=True):
            lines.append(f"| {stage} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
        lines.append("")
    lines += ["Model vs the empirical transition matrix (lower is better):", "", *verdict(report), ""]
    if report.get("diagnosis"):
        d = report["diagnosis"]
        lines += [
            f"Why the 5-epoch smoke run lost ({d['setting']}):",
            "",
            "| setting | " + " | ".join(d["columns"]) + " |",
        ]
        lines += ["|---" * (len(d["columns"]) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for name, row in d["rows"].items()]
        lines += ["", d["finding"], ""]
    lines += [
        "## CSAT (next answer within 14 days)",
        "",
        "| who | MAE vs true expected score | Spearman vs true expected | MAE vs observed score |",
        "|---|---|---|---|",
    ]
    for who, row in c["summary"].items():
        lines.append(
            f"| {who} | {_fmt(row['mae_vs_true_expected'])} | {_fmt(row['spearman_vs_true_expected'])} | "
            f"{_fmt(row['mae_vs_observed'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--override", action="append", default=[], help="extra Hydra overrides")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "lifecycle_csat")
    parser.add_argument("--merge", type=Path, nargs="+", help="merge these reports' seeds instead of training")
    args = parser.parse_args(argv)
    if args.merge:
        report = merge([json.loads(p.read_text()) for p in args.merge])
    else:
        report = run_study(args.seeds, args.max_epochs, args.override)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(report, indent=2, allow_nan=False))
    atomic_write_text(args.out.with_suffix(".md"), render_markdown(report))
    print(render_markdown(report))
