"""Privacy-utility trade-off of DP-SGD: holdout AUC and ECE against ε (1, 3, 8, ∞) for deal win and lead conversion.

Why this design: every arm goes through the one train path (`train()` with `trainer.privacy.epsilon=...`), on the
same datamodule per (task, seed), so the only difference between arms is DP-SGD. ε = ∞ is ordinary training of the
same MLP with the same recipe (the non-private baseline); the rep's own probability (deal win) is the simple
baseline the model must beat. The AUC cost of a budget is paired per seed (same data, same seed) and summarised
with a t-interval over seeds. Seeds vary both the simulated CRM and the training seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.train import build_pipeline, train

log = logging.getLogger(__name__)
EPSILONS = ("1", "3", "8", "inf")
TASKS = ("deal_win", "lead_conversion")
GOAL = {"task": "deal_win", "epsilon": 3.0, "max_auc_cost": 0.01}


def overrides(task: str, seed: int, n_opportunities: int, epochs: int, work: Path) -> list[str]:
    return [
        f"task={task}",
        "model=mlp",
        "logger=none",
        "task.compare_lightgbm=null",
        f"seed={seed}",
        f"data.source.seed={seed}",
        f"data.source.n_opportunities={n_opportunities}",
        f"data.source.n_companies={max(100, n_opportunities // 7)}",
        f"data.source.n_reps={max(8, n_opportunities // 250)}",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={work}",
    ]


def run_arm(task: str, seed: int, epsilon: str, base: list[str], datamodule: Any, work: Path) -> dict[str, Any]:
    out = work / f"{task}-s{seed}-eps{epsilon}"
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*base, f"paths.output_dir={out}", f"trainer.privacy.epsilon={epsilon}"])
    start = time.perf_counter()
    record = train(cfg, datamodule=datamodule)
    metrics, privacy = record["metrics"], record["extra"].get("privacy") or {}
    return {
        "task": task,
        "seed": seed,
        "epsilon_target": math.inf if epsilon == "inf" else float(epsilon),
        "epsilon_spent": privacy.get("epsilon", math.inf),
        "delta": privacy.get("delta"),
        "noise_multiplier": privacy.get("noise_multiplier"),
        "steps": privacy.get("steps"),
        "auc": metrics["model"]["auc"],
        "ece": metrics["model"]["ece"],
        "rep_auc": (metrics.get("rep") or {}).get("auc"),
        "oracle_auc": (metrics.get("oracle") or {}).get("auc"),
        "epochs": record["epochs"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task and ε: AUC, ECE and the paired AUC cost vs ε = ∞ (t-intervals over seeds)."""
    summary: dict[str, Any] = {}
    for task in sorted({r["task"] for r in rows}):
        plain = {r["seed"]: r for r in rows if r["task"] == task and math.isinf(r["epsilon_target"])}
        summary[task] = {}
        for eps in sorted({r["epsilon_target"] for r in rows if r["task"] == task}):
            arm = [r for r in rows if r["task"] == task and r["epsilon_target"] == eps]
            costs = [plain[r["seed"]]["auc"] - r["auc"] for r in arm if r["seed"] in plain]
            summary[task][str(eps)] = {
                "auc": t_interval([r["auc"] for r in arm]),
                "ece": t_interval([r["ece"] for r in arm]),
                "auc_cost_vs_non_private": t_interval(costs) if costs else None,
                "epsilon_spent": t_interval([r["epsilon_spent"] for r in arm]) if math.isfinite(eps) else None,
                "rep_auc": t_interval([r["rep_auc"] for r in arm]) if arm[0]["rep_auc"] is not None else None,
            }
    return summary


def judge_goal(summary: dict[str, Any]) -> dict[str, Any]:
    cell = summary.get(GOAL["task"], {}).get(str(GOAL["epsilon"]))
    if cell is None or cell["auc_cost_vs_non_private"] is None:
        return {**GOAL, "verdict": "not measured"}
    cost = cell["auc_cost_vs_non_private"]
    if not cost["ci95"]:  # one seed: a point estimate, no interval to judge "met" on
        verdict = "not met" if cost["mean"] > GOAL["max_auc_cost"] else "inconclusive (one seed, no interval)"
        return {**GOAL, "measured_auc_cost": cost, "verdict": verdict}
    upper = cost["ci95"][1]
    verdict = (
        "met"
        if upper <= GOAL["max_auc_cost"]
        else ("not met" if cost["mean"] > GOAL["max_auc_cost"] else "inconclusive")
    )
    return {**GOAL, "measured_auc_cost": cost, "verdict": verdict}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for task, cells in summary.items():
        keys = sorted(cells, key=float)
        xs = [float(k) if math.isfinite(float(k)) else 20.0 for k in keys]  # ∞ drawn at 20
        for ax, metric in zip(axes, ("auc", "ece"), strict=True):
            means = [cells[k][metric]["mean"] for k in keys]
            errs = [
                (cells[k][metric]["ci95"][1] - cells[k][metric]["mean"]) if cells[k][metric]["ci95"] else 0.0
                for k in keys
            ]
            ax.errorbar(xs, means, yerr=errs, marker="o", capsize=3, label=task)
    for ax, metric in zip(axes, ("holdout AUC", "holdout ECE"), strict=True):
        ax.set_xscale("log")
        ax.set_xticks([1, 3, 8, 20], ["1", "3", "8", "∞"])
        ax.set_xlabel("ε (DP-SGD, Opacus RDP)")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle("DP-SGD privacy-utility trade-off (MLP, mean and 95% CI over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--epsilons", nargs="+", default=list(EPSILONS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-opportunities", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fulqrun-bench-privacy"))
    parser.add_argument("--output", type=Path, default=Path("reports/privacy.json"))
    parser.add_argument(
        "--override", action="append", default=[], help="extra train override for every arm (the DP levers: lr, batch)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    rows = []
    for task in args.tasks:
        for seed in range(args.seeds):
            base = [*overrides(task, seed, args.n_opportunities, args.epochs, args.work), *args.override]
            with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
                cfg = compose("train", overrides=[*base, f"paths.output_dir={args.work / 'data'}"])
            datamodule = build_pipeline(cfg).build_datamodule(cfg)
            datamodule.setup("fit")
            for eps in args.epsilons:
                rows.append(run_arm(task, seed, eps, base, datamodule, args.work))
                log.info("privacy bench: %s", rows[-1])
    summary = summarise(rows)
    report = {
        "benchmark": "privacy",
        "question": "What does DP-SGD cost in holdout AUC and ECE at ε = 1, 3, 8 vs non-private training?",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "goal": judge_goal(summary),
        "summary": summary,
        "runs": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=float))
    tmp.replace(args.output)
    plot(summary, args.output.with_suffix(".png"))
    print(
        json.dumps(
            {
                "goal": report["goal"],
                "auc": {t: {e: c["auc"]["mean"] for e, c in s.items()} for t, s in summary.items()},
            },
            indent=1,
        )
    )
    return report


__all__ = ["judge_goal", "main", "summarise"]
