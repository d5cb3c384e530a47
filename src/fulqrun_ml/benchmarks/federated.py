"""`scripts/bench_federated.py`: federated (FedAvg, FedProx, with secure aggregation and client-level DP) vs
centralised vs local-only AUC per organisation.

Writes reports/federated.json, .md and .png. Intervals are t-intervals over seeds. A seed re-draws every
organisation's CRM and the training seed. Gaps are paired per seed (same rows, same initialisation seed). The
issue's goals, judged on the paired gaps:
- federated within 0.005 AUC of centralised, on the test-row-weighted mean over organisations: met when the upper
  95% bound of (centralised - federated) is <= 0.005, not met when its mean is above, else inconclusive;
- ahead of local-only for the small organisations (train rows below the median): met when the lower bound of
  (federated - local-only) is > 0, not met when its mean is <= 0, else inconclusive.
Arms named `fedavg+secagg` / `fedavg+dp<sigma>` (federated_study.arm_overrides) also get their cost against plain
FedAvg on the same seed: the paired AUC gap, the largest per-organisation |gap|, and the epsilon spent.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from fulqrun_ml.benchmarks.federated_study import run_seed
from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.machine import machine_info
from fulqrun_ml.registry.locking import atomic_write_text

log = logging.getLogger(__name__)
ALL = "all (test-row-weighted)"
GOALS = {"max_gap_to_centralised": 0.005, "small_organisations": "train rows below the median organisation"}


def with_weighted_means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add one row per (seed, arm): the test-row-weighted mean AUC over organisations."""
    out = list(rows)
    for seed, arm in sorted({(r["seed"], r["arm"]) for r in rows}):
        cell = [r for r in rows if r["seed"] == seed and r["arm"] == arm and r["auc"] is not None]
        n = sum(r["n"] for r in cell)
        auc = sum(r["auc"] * r["n"] for r in cell) / n
        oracle = sum(r["oracle_auc"] * r["n"] for r in cell) / n
        row = {"seed": seed, "arm": arm, "organisation": ALL, "auc": auc, "oracle_auc": oracle, "n": n}
        out.append({**row, "epsilon": cell[0].get("epsilon")})
    return out


def summarise(rows: list[dict[str, Any]], federated_arms: list[str]) -> dict[str, Any]:
    """Per organisation: AUC per arm and the oracle, and the paired gaps of each federated arm."""
    summary: dict[str, Any] = {}
    for org in dict.fromkeys(r["organisation"] for r in rows):
        cell = [r for r in rows if r["organisation"] == org and r["auc"] is not None]
        by = {(r["arm"], r["seed"]): r["auc"] for r in cell}
        seeds = sorted({r["seed"] for r in cell})
        entry: dict[str, Any] = {
            "train_rows": int(np.mean([r["train_rows"] for r in cell])) if "train_rows" in cell[0] else None,
            "oracle_auc": t_interval([r["oracle_auc"] for r in cell if r["arm"] == "centralised"]),
            "auc": {arm: t_interval([by[(arm, s)] for s in seeds if (arm, s) in by]) for arm in arms_of(cell)},
        }
        for arm in federated_arms:
            for other in ("centralised", "local_only", *(["fedavg"] if arm != "fedavg" else [])):
                gaps = [by[(arm, s)] - by[(other, s)] for s in seeds if (arm, s) in by and (other, s) in by]
                if gaps:
                    entry[f"{arm}_minus_{other}"] = t_interval(gaps)
        summary[org] = entry
    return summary


def privacy_cost(rows: list[dict[str, Any]], summary: dict[str, Any], federated_arms: list[str]) -> dict[str, Any]:
    """Per arm other than plain FedAvg: epsilon, the paired AUC gap to FedAvg on the weighted mean, and the
    largest |gap| over organisations and seeds (secure aggregation should leave it at rounding level)."""
    by = {(r["arm"], r["seed"], r["organisation"]): r["auc"] for r in rows if r["auc"] is not None}
    out = {}
    for arm in federated_arms:
        if arm == "fedavg" or f"{arm}_minus_fedavg" not in summary[ALL]:
            continue
        gaps = [abs(v - by[("fedavg", s, o)]) for (a, s, o), v in by.items() if a == arm and ("fedavg", s, o) in by]
        epsilons = {r.get("epsilon") for r in rows if r["arm"] == arm}
        out[arm] = {
            "epsilon": max((e for e in epsilons if e is not None), default=None),
            "auc_minus_fedavg": summary[ALL][f"{arm}_minus_fedavg"],
            "max_abs_gap_to_fedavg": max(gaps, default=None),
        }
    return out


def arms_of(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["arm"] for r in rows))


def judge(summary: dict[str, Any], federated_arms: list[str]) -> dict[str, Any]:
    """The two goals per federated arm, from the paired intervals."""
    sizes = {org: e["train_rows"] for org, e in summary.items() if org != ALL}
    median = float(np.median(list(sizes.values())))
    small = [org for org, n in sizes.items() if n < median]
    verdicts: dict[str, Any] = {"small_organisations": small}
    for arm in federated_arms:
        gap = summary[ALL][f"{arm}_minus_centralised"]  # federated - centralised; the goal bounds the shortfall
        low = gap["ci95"][0] if gap["ci95"] else gap["mean"]
        limit = -GOALS["max_gap_to_centralised"]
        near = "met" if low >= limit else ("not met" if gap["mean"] < limit else "inconclusive")
        ahead = {}
        for org in small:
            lead = summary[org][f"{arm}_minus_local_only"]
            lower = lead["ci95"][0] if lead["ci95"] else lead["mean"]
            ahead[org] = {
                "gap": lead,
                "verdict": "met" if lower > 0 else ("not met" if lead["mean"] <= 0 else "inconclusive"),
            }
        verdicts[arm] = {"within_0.005_of_centralised": {"gap": gap, "verdict": near}, "ahead_of_local_only": ahead}
    return verdicts


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orgs = list(summary)
    arms = list(summary[orgs[0]]["auc"])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / (len(arms) + 1)
    for k, arm in enumerate([*arms, "oracle"]):
        cells = [summary[o]["oracle_auc"] if arm == "oracle" else summary[o]["auc"][arm] for o in orgs]
        means = [c["mean"] for c in cells]
        errs = [(c["ci95"][1] - c["mean"]) if c["ci95"] else 0.0 for c in cells]
        ax.bar(np.arange(len(orgs)) + k * width, means, width, yerr=errs, capsize=2, label=arm)
    labels = [f"{o}\n({summary[o]['train_rows']} train rows)" if summary[o]["train_rows"] else o for o in orgs]
    ax.set_xticks(np.arange(len(orgs)) + width * len(arms) / 2, labels, fontsize=8)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("holdout AUC (mean, 95% CI over seeds)")
    ax.set_title("Deal win: federated vs centralised vs local-only, per organisation")
    ax.legend(fontsize=8, ncol=len(arms) + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "n/a"
    if cell["ci95"] is None:
        return f"{cell['mean']:.4f}"
    return f"{cell['mean']:.4f} [{cell['ci95'][0]:.4f}, {cell['ci95'][1]:.4f}]"


def markdown(report: dict[str, Any]) -> str:
    summary, arms = report["summary"], report["federated_arms"]
    all_arms = list(summary[ALL]["auc"])
    lines = [
        "# Federated learning across organisations (deal win)",
        "",
        f"{report['settings']['seeds']} seeds, {report['settings']['clients']} organisations, "
        f"{report['settings']['rounds']} rounds x 1 local epoch (the same epochs for every arm), "
        f"{report['seconds']:.0f} s on {report['machine'].get('cpu_count')} shared CPUs. "
        "AUC: mean [95% CI over seeds].",
        "",
        "| organisation | train rows | " + " | ".join(all_arms) + " | oracle |",
        "|---|---|" + "---|" * (len(all_arms) + 1),
    ]
    for org, entry in summary.items():
        cells = " | ".join(fmt(entry["auc"].get(a)) for a in all_arms)
        lines.append(f"| {org} | {entry['train_rows'] or ''} | {cells} | {fmt(entry['oracle_auc'])} |")
    lines += ["", "Paired gaps (same seed):", ""]
    for arm in arms:
        for org, entry in summary.items():
            lines.append(
                f"- {arm} - centralised, {org}: {fmt(entry.get(f'{arm}_minus_centralised'))}; "
                f"{arm} - local-only: {fmt(entry.get(f'{arm}_minus_local_only'))}"
            )
    if report.get("privacy_cost"):
        lines += ["", "Cost of secure aggregation and client-level DP (paired with plain FedAvg, same seed):", ""]
        lines += ["| arm | ε (δ = 1e-5) | AUC - FedAvg, all | max abs gap, any organisation |", "|---|---|---|---|"]
        for arm, cost in report["privacy_cost"].items():
            eps = "none (no DP)" if cost["epsilon"] is None else f"{cost['epsilon']:.3g}"
            worst = "n/a" if cost["max_abs_gap_to_fedavg"] is None else f"{cost['max_abs_gap_to_fedavg']:.2g}"
            lines.append(f"| {arm} | {eps} | {fmt(cost['auc_minus_fedavg'])} | {worst} |")
    lines += ["", "Goals:", ""]
    for arm in arms:
        goal = report["goals"][arm]
        near = goal["within_0.005_of_centralised"]
        lines.append(f"- {arm} within 0.005 AUC of centralised: **{near['verdict']}** (gap {fmt(near['gap'])})")
        for org, cell in goal["ahead_of_local_only"].items():
            lines.append(f"- {arm} ahead of local-only for {org}: **{cell['verdict']}** (gap {fmt(cell['gap'])})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--n-opportunities", type=int, default=3000, help="the federation's total")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=["fedavg", "fedavg+secagg", "fedavg+secagg+dp0.1", "fedavg+secagg+dp1"],
        help="federated arms: <fedavg|fedprox>[+secagg][+dp<noise multiplier>]",
    )
    parser.add_argument("--mu", type=float, default=0.01)
    parser.add_argument("--clip-norm", type=float, default=0.1, help="client-level DP clipping norm of the dp arms")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fulqrun-bench-federated"))
    parser.add_argument("--output", type=Path, default=Path("reports/federated.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for seed in range(args.seeds):
        work = args.work / stamp
        rows += run_seed(
            seed, args.clients, args.n_opportunities, args.rounds, args.algorithms, args.mu, work, args.clip_norm
        )
    rows = with_weighted_means(rows)
    summary = summarise(rows, args.algorithms)
    report = {
        "benchmark": "federated",
        "question": "Per organisation, how close is a federated deal-win model to a centralised one, and does it "
        "beat what each organisation learns alone?",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
        "federated_arms": args.algorithms,
        "goals": judge(summary, args.algorithms),
        "privacy_cost": privacy_cost(rows, summary, args.algorithms),
        "summary": summary,
        "runs": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, json.dumps(report, indent=2, default=float))
    atomic_write_text(args.output.with_suffix(".md"), markdown(report))
    plot(summary, args.output.with_suffix(".png"))
    print(markdown(report))
    return report
