"""Model potential vs the statistical estimate against the simulator's truth: `model_potential` in
reports/bench_territory.json (other keys kept) + reports/bench_territory_model_potential.png.

    .venv/bin/python scripts/bench_model_potential.py [--seeds 3] [--epochs 3] [--out reports]

Per seed (an independent simulated organisation, configs/optimize/territories.yaml's CRM with that seed):
1. Train small deal-win, account-expansion and account-churn models through the real spine (the `train` Hydra
   config composed as `fulqrun-ml train task=... logger=none trainer.max_epochs=E data.source.seed=S` does, then
   `export_run` as `fulqrun-ml export` does) into a temporary registry, and point `production` at each.
   The training CRM is the optimisation CRM: same simulator arguments, so the models score the book they learnt.
2. Account potential (a) from the statistical estimate (estimates.py, the baseline) and (b) from the models
   (model_potential.py), plus two ablations of (b): without the churn term, and the open-deal term alone.
3. Against the TRUTH (simulator_geo.true_revenue_matrix): Spearman rank correlation with each account's true
   expected revenue per year under its current rep; and the territory MILP (same config, `time_limit_s` capped)
   run on each potential, scored by the cv_reduction of the TRUE potential (mean over reps) across territories.
Means with 95 % t-intervals over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from scipy import stats

from fulqrun_ml.data.simulator_geo import true_revenue_matrix
from fulqrun_ml.datamodules.task_builders import DealWinBuilder
from fulqrun_ml.export.package import export_run
from fulqrun_ml.machine import machine_info
from fulqrun_ml.optimize.commands import load_config
from fulqrun_ml.optimize.inputs import OptimizeInputs, simulated_inputs
from fulqrun_ml.optimize.metrics import coefficient_of_variation
from fulqrun_ml.optimize.model_potential import apply_potential
from fulqrun_ml.optimize.territories import TerritoryConfig, design_territories
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.aliases import promote
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.training.train import train

TASKS = ("deal_win", "account_expansion", "account_churn")
VARIANTS = ("estimates", "models", "models_no_churn", "open_deals_only")


def interval(values: list[float]) -> dict:
    """Mean with a 95 % t-interval over seeds (the seeds are independent simulated organisations)."""
    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": [float(x.mean() - half), float(x.mean() + half)],
            "min": float(x.min()), "max": float(x.max()), "n_seeds": len(x)}  # fmt: skip


def train_and_publish(seed: int, simulate: dict, epochs: int, root: Path) -> dict:
    """Train and export the three tasks on the seed's CRM; returns task -> holdout AUC of the model."""
    models_dir, aucs = root / "models", {}
    source = [f"data.source.{k}={v}" for k, v in simulate.items()]
    for task in TASKS:
        overrides = [f"task={task}", "logger=none", f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false",
                     "task.compare_lightgbm=null", f"paths.root_dir={root}", f"paths.output_dir={root / task}",
                     *source]  # fmt: skip
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        result = train(cfg)
        version, _ = export_run(Path(result["run_dir"]), models_dir, task)
        promote(models_dir, task, version.version, "production", actor="bench_model_potential")
        aucs[task] = float(result["metrics"]["model"]["auc"])
    return aucs


def true_cv_reduction(truth_mean: np.ndarray, reps: pd.DataFrame, before: np.ndarray, after: np.ndarray) -> float:
    index = pd.Index(reps["rep_id"])

    def cv(owner: np.ndarray) -> float:
        return coefficient_of_variation(np.bincount(index.get_indexer(owner), truth_mean, len(reps)))

    return 1 - cv(after) / cv(before)


def open_deals_truth(inputs: OptimizeInputs) -> dict:
    """The open-deal term in its own domain: per account with open deals, Spearman of (model) sum P(win) x value
    and (baseline) sum segment win rate x value against the REALISED sum won x value (the simulator's latent
    outcome of each open deal)."""
    assert inputs.latent is not None
    rows = DealWinBuilder().scoring_rows(inputs.tables, 0)
    latent = inputs.latent.assign(opportunity_id=inputs.latent["opportunity_id"].astype(str))
    won = latent.set_index("opportunity_id")["won"].reindex(rows["opportunity_id"].astype(str)).fillna(False)
    company = inputs.tables.opportunities.set_index("id")["company_id"].reindex(rows["opportunity_id"]).to_numpy()
    rate = inputs.accounts.set_index("company_id")["segment_win_rate"].reindex(company).to_numpy()
    value = rows["value"].to_numpy(dtype=float)
    realised = pd.Series(won.to_numpy(dtype=float) * value).groupby(company).sum()
    baseline = pd.Series(rate * value).groupby(company).sum().reindex(realised.index)
    model = inputs.accounts.set_index("company_id")["open_deals_value"].reindex(realised.index)
    return {"accounts": len(realised), "spearman_model": float(stats.spearmanr(model, realised).statistic),
            "spearman_segment_rate": float(stats.spearmanr(baseline, realised).statistic)}  # fmt: skip


def one_seed(seed: int, epochs: int, solver: TerritoryConfig, base: dict) -> tuple[dict, pd.DataFrame]:
    data = base["data"] | {"simulate": base["data"]["simulate"] | {"seed": seed}, "geo_seed": seed}
    with tempfile.TemporaryDirectory(prefix="bench-model-potential-") as tmp:
        started = time.perf_counter()
        aucs = train_and_publish(seed, data["simulate"], epochs, Path(tmp))
        train_seconds = time.perf_counter() - started
        inputs = simulated_inputs(data)
        modelled = apply_potential(inputs, base.get("potential"), "models", str(Path(tmp) / "models"))
    accounts, world = modelled.accounts, modelled.world
    assert world is not None
    matrix = true_revenue_matrix(world, accounts["company_id"])
    rows = pd.Index(world.reps["rep_id"]).get_indexer(accounts["current_rep"])
    truth_current = matrix[rows, np.arange(len(accounts))]
    potentials = {
        "estimates": accounts["potential_estimate"].to_numpy(),
        "models": accounts["potential"].to_numpy(),
        "models_no_churn": (accounts["open_deals_value"] + accounts["expansion_value"]).to_numpy(),
        "open_deals_only": accounts["open_deals_value"].to_numpy(),
    }
    row: dict = {"seed": seed, "holdout_auc": aucs, "train_export_seconds": round(train_seconds, 1),
                 "potential_report": modelled.potential, "spearman_vs_truth": {}, "territories": {}}  # fmt: skip
    for name, values in potentials.items():
        row["spearman_vs_truth"][name] = float(stats.spearmanr(values, truth_current).statistic)
    row["open_deals_vs_realised"] = open_deals_truth(modelled)
    for name in ("estimates", "models"):
        book = inputs.accounts.assign(potential=potentials[name])
        result = design_territories(book, inputs.reps, solver)
        before = book["current_rep"].to_numpy()
        row["territories"][name] = {
            "cv_reduction": result.summary()["cv_reduction"],
            "moved_fraction": result.summary()["moved_fraction"],
            "true_potential_cv_reduction": true_cv_reduction(matrix.mean(axis=0), inputs.reps, before, result.owner),
            "status": result.status,
        }
    print(f"seed {seed}: spearman {row['spearman_vs_truth']} territories {row['territories']}", flush=True)
    frame = pd.DataFrame(
        {"truth": truth_current} | {k: v for k, v in potentials.items() if k in ("estimates", "models")}
    )
    return row, frame


def plot(path: Path, frame: pd.DataFrame, seed: int) -> None:
    """Rank of each potential against the rank of the true potential (one seed)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    truth_rank = frame["truth"].rank(pct=True)
    for ax, name in zip(axes, ("estimates", "models"), strict=True):
        rho = stats.spearmanr(frame[name], frame["truth"]).statistic
        ax.scatter(frame[name].rank(pct=True), truth_rank, s=6, alpha=0.5)
        ax.set(title=f"{name}: Spearman {rho:.2f}", xlabel=f"rank of the {name} potential")
    axes[0].set_ylabel("rank of the TRUE potential (simulator)")
    fig.suptitle(f"account potential vs the simulator's truth, seed {seed}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=20.0, help="territory MILP limit per solve (s)")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config("territories", [])
    solver = TerritoryConfig(**base["solver"] | {"time_limit_s": args.time_limit})
    started = time.perf_counter()
    runs = []
    for seed in range(1, args.seeds + 1):
        row, frame = one_seed(seed, args.epochs, solver, base)
        runs.append(row)
        if seed == 1:
            plot(out / "bench_territory_model_potential.png", frame, seed)
    section = {
        "machine": machine_info(),
        "setup": {
            "crm": base["data"]["simulate"] | {"seed": "1..n"},
            "epochs": args.epochs,
            "model": "mlp",
            "territory_config": dataclasses.asdict(solver),
            "truth": "simulator_geo.true_revenue_matrix: "
            "Spearman against the current rep's row; territory balance against the mean over reps",
        },
        "spearman_vs_truth": {v: interval([r["spearman_vs_truth"][v] for r in runs]) for v in VARIANTS},
        "spearman_models_minus_estimates": interval(
            [r["spearman_vs_truth"]["models"] - r["spearman_vs_truth"]["estimates"] for r in runs]
        ),
        "territories": {
            name: {
                key: interval([r["territories"][name][key] for r in runs])
                for key in ("cv_reduction", "moved_fraction", "true_potential_cv_reduction")
            }
            for name in ("estimates", "models")
        },
        "open_deals_vs_realised": {
            k: interval([r["open_deals_vs_realised"][k] for r in runs])
            for k in ("spearman_model", "spearman_segment_rate")
        },
        "open_deals_model_minus_segment_rate": interval(
            [
                r["open_deals_vs_realised"]["spearman_model"] - r["open_deals_vs_realised"]["spearman_segment_rate"]
                for r in runs
            ]
        ),
        "holdout_auc": {t: interval([r["holdout_auc"][t] for r in runs]) for t in TASKS},
        "per_seed": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report_path = out / "bench_territory.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["model_potential"] = section
    atomic_write_json(report_path, report)
    print(json.dumps({k: section[k] for k in ("spearman_vs_truth", "territories", "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
