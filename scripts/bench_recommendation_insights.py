"""Pricing, coaching and strategy recommendations against the simulator's truth, over seeds, next to baselines.

    .venv/bin/python scripts/bench_recommendation_insights.py [--seeds 8] [--deals 6000] [--out reports]

Per seed (an independent simulated organisation: 6,000 deals, 24 reps, 800 accounts by default):
1. **Pricing** (`data/simulator_pricing.py`, configs/recommend/pricing.yaml): models fit on closed deals created
   in the first 70 % of the period and price every later deal; regret = true expected revenue at the true
   optimum (same guardrails) - at the chosen discount, per deal, for both monotone methods with the confounder
   proxy, the naive curve, no discount, the historical discount and a fixed 10 %. Paired differences against
   the fixed 10 % come with their own interval.
2. **Coaching** (`data/simulator_coaching.py`): mean over stages of Spearman(estimated, true rep x stage skill)
   for the raw conversion rate (baseline), the mix-adjusted unshrunk effect and the adjusted, shrunk one.
3. **Strategy**: Spearman of the segment win rate (ours and the raw rate) and expected value per deal against the
   story's true segment parameters.
Intervals are 95 % t-intervals over seeds. Writes reports/bench_recommendation_insights.json and .png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from fulqrun_ml.data.simulator import COUNTRIES, simulate_crm
from fulqrun_ml.data.simulator_coaching import simulate_coaching
from fulqrun_ml.data.simulator_pricing import simulate_pricing
from fulqrun_ml.machine import machine_info
from fulqrun_ml.recommend.coaching import CoachingConfig
from fulqrun_ml.recommend.coaching_eval import evaluate_coaching
from fulqrun_ml.recommend.insight_commands import load_config, model_config
from fulqrun_ml.recommend.pricing import PricingConfig
from fulqrun_ml.recommend.pricing_eval import evaluate_pricing, example_curves
from fulqrun_ml.recommend.strategy import StrategyConfig, rank_segments, segment_deals
from fulqrun_ml.recommend.strategy_eval import evaluate_strategy
from fulqrun_ml.registry.locking import atomic_write_json

PRICING_METHODS = ("no_discount", "historical", "fixed_10pct", "concave_logit_naive", "lightgbm_adjusted",
                   "concave_logit_adjusted")  # fmt: skip


def interval(values: list[float]) -> dict:
    """Mean with a 95 % t-interval over seeds (the seeds are independent simulated organisations)."""
    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": [float(x.mean() - half), float(x.mean() + half)],
            "min": float(x.min()), "max": float(x.max()), "n_seeds": len(x)}  # fmt: skip


def run_seed(seed: int, deals: int, pricing: PricingConfig, coaching: CoachingConfig, strategy: StrategyConfig) -> dict:
    """All three evaluations on one simulated organisation, with their wall times."""
    crm = simulate_crm(n_opportunities=deals, n_reps=24, n_companies=max(deals // 7, 50), seed=seed)
    out: dict = {"seed": seed}
    start = time.perf_counter()
    out["pricing"] = evaluate_pricing(simulate_pricing(crm, seed), pricing)
    out["pricing_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    out["coaching"] = evaluate_coaching(simulate_coaching(crm, seed), coaching)
    out["coaching_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    table = rank_segments(segment_deals(crm.tables.opportunities, crm.tables.companies, strategy.region_of_country),
                          crm.tables.companies, strategy)  # fmt: skip
    out["strategy"] = evaluate_strategy(table)
    out["strategy_seconds"] = time.perf_counter() - start
    return out


def summarise(runs: list[dict]) -> dict:
    """Intervals over seeds for every headline number."""
    pricing = {m: {k: interval([r["pricing"][m][k] for r in runs]) for k in ("regret_per_deal",
               "regret_share_of_optimum", "mean_discount")} for m in PRICING_METHODS}  # fmt: skip
    for m in ("concave_logit_adjusted", "lightgbm_adjusted", "concave_logit_naive"):
        for k in ("estimated_win_lift_at_cap", "true_win_lift_at_cap", "curve_mae"):
            pricing[m][k] = interval([r["pricing"][m][k] for r in runs])
        pricing[m]["regret_minus_fixed_10pct"] = interval(
            [r["pricing"][m]["regret_per_deal"] - r["pricing"]["fixed_10pct"]["regret_per_deal"] for r in runs]
        )
    pricing["true_optimum_revenue_per_deal"] = interval([r["pricing"]["true_optimum_revenue_per_deal"] for r in runs])
    pricing["true_optimal_discount_mean"] = interval([r["pricing"]["true_optimal_discount_mean"] for r in runs])
    coaching = {k: interval([r["coaching"][k]["spearman_mean_over_stages"] for r in runs])
                for k in ("raw_win_rate", "adjusted_unshrunk", "adjusted_shrunk")}  # fmt: skip
    coaching["shrunk_minus_raw"] = interval(
        [r["coaching"]["adjusted_shrunk"]["spearman_mean_over_stages"]
         - r["coaching"]["raw_win_rate"]["spearman_mean_over_stages"] for r in runs]
    )  # fmt: skip
    coaching["tau2_fitted"] = interval([r["coaching"]["tau2_fitted"] for r in runs])
    strategy = {k: interval([r["strategy"][k] for r in runs])
                for k in ("win_rate_spearman", "raw_win_rate_spearman", "value_per_deal_spearman")}  # fmt: skip
    return {"pricing": pricing, "coaching": coaching, "strategy": strategy}


def plot(path: Path, curves: dict, summary: dict) -> None:
    """Left: estimated (adjusted, naive) vs true curves for a few deals. Right: regret by method with 95 % CIs."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
    grid = np.asarray(curves["grid"])
    colours = plt.cm.tab10(np.arange(len(curves["deals"])))
    for colour, deal in zip(colours, curves["deals"], strict=True):
        axes[0].plot(grid, deal["true"], color=colour, lw=2.2, label=f"truth: {deal['segment']}")
        axes[0].plot(grid, deal["concave_logit_adjusted"], color=colour, ls="--", lw=1.4)
        axes[0].fill_between(grid, deal["concave_logit_adjusted_low"], deal["concave_logit_adjusted_high"],
                             color=colour, alpha=0.12)  # fmt: skip
        axes[0].plot(grid, deal["concave_logit_naive"], color=colour, ls=":", lw=1.2)
    axes[0].set_xlabel("discount")
    axes[0].set_ylabel("P(win)")
    axes[0].set_title("truth (solid), adjusted model (dashed, 90% band), naive (dotted)")
    axes[0].legend(fontsize=7)
    means = [summary["pricing"][m]["regret_per_deal"]["mean"] for m in PRICING_METHODS]
    errors = np.array([[mean - summary["pricing"][m]["regret_per_deal"]["ci95"][0],
                        summary["pricing"][m]["regret_per_deal"]["ci95"][1] - mean]
                       for m, mean in zip(PRICING_METHODS, means, strict=True)]).T  # fmt: skip
    axes[1].barh(PRICING_METHODS, means, xerr=errors, color="tab:blue", alpha=0.8)
    axes[1].set_xlabel("regret: true expected revenue lost per deal vs the true optimum ($, 95% CI)")
    axes[1].set_title("pricing regret by method")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--deals", type=int, default=6000)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    pricing = model_config(PricingConfig, load_config("pricing", [])["model"])
    coaching = model_config(CoachingConfig, load_config("coaching", [])["model"])
    strategy_settings = load_config("strategy", [])["model"]
    strategy_settings.setdefault("region_of_country", {c: r for r, cs in COUNTRIES.items() for c in cs})
    strategy = model_config(StrategyConfig, strategy_settings)
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(seed, args.deals, pricing, coaching, strategy))  # type: ignore[arg-type]
        print(f"seed {seed}: pricing regret {runs[-1]['pricing']['concave_logit_adjusted']['regret_per_deal']:.0f} "
              f"(fixed 10% {runs[-1]['pricing']['fixed_10pct']['regret_per_deal']:.0f}), coaching rho "
              f"{runs[-1]['coaching']['adjusted_shrunk']['spearman_mean_over_stages']:.3f}, strategy rho "
              f"{runs[-1]['strategy']['win_rate_spearman']:.3f}", flush=True)  # fmt: skip
    summary = summarise(runs)
    crm = simulate_crm(n_opportunities=args.deals, n_reps=24, n_companies=max(args.deals // 7, 50), seed=0)
    curves = example_curves(simulate_pricing(crm, 0), pricing)  # type: ignore[arg-type]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(out / "bench_recommendation_insights.png", curves, summary)
    report = {
        "benchmark": "recommendation_insights",
        "setup": {
            "seeds": args.seeds,
            "deals": args.deals,
            "reps": 24,
            "companies": max(args.deals // 7, 50),
            "pricing_train_share": 0.7,
            "pricing_config": str(pricing),
            "coaching_config": str(coaching),
            "strategy_bootstrap": strategy.n_bootstrap,
        },
        "headline": {
            "pricing_regret_per_deal": summary["pricing"]["concave_logit_adjusted"]["regret_per_deal"],
            "pricing_regret_fixed_10pct": summary["pricing"]["fixed_10pct"]["regret_per_deal"],
            "coaching_spearman": summary["coaching"]["adjusted_shrunk"],
            "coaching_spearman_raw_baseline": summary["coaching"]["raw_win_rate"],
            "strategy_spearman": summary["strategy"]["win_rate_spearman"],
            "strategy_spearman_raw_baseline": summary["strategy"]["raw_win_rate_spearman"],
        },
        "summary": summary,
        "example_curves": curves,
        "runs": runs,
        "seconds": time.perf_counter() - start,
        "machine": machine_info(),
    }
    atomic_write_json(out / "bench_recommendation_insights.json", report)
    print(f"wrote {out / 'bench_recommendation_insights.json'} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
