"""Pipeline and market analytics measured against the simulator's known truth, over seeds.

    .venv/bin/python scripts/bench_analytics.py [--seeds 0 1 2 3 4] [--n-opportunities 4000]

Writes reports/pipeline_analytics.json and reports/market_intelligence.json (+ PNG each), with machine info.

Pipeline: the health score's rolling-origin backtest (predicting each rep's quarterly attainment at the quarter
start) next to the same-run naive predictors (last quarter's attainment; the 3x coverage rule), per seed, with
95% t-intervals over seeds of MAE, Spearman and Pearson correlation and of the paired difference to each baseline.

Market: on the simulator with its competition scenario (`simulator_competition.py`):
- competitor win rates per quarter: share of Wilson 95% intervals that contain the true expected win rate (the
  mean true win probability of the same decided deals, from `latent`), and the estimated difference to "no
  competitor" against the true one;
- change points: the entrant's shift in the EMEA account region (true onset: deals created from the entry day)
  detected or not, its month, and detections in groups with no true change (false alarms);
- STL of monthly bookings: seasonal strength and whether the peak falls in the quarter's third month (the
  quarter-end push of the story);
- loss reasons: agreement of the recorded reason with the true latent cause (the story misreports 15%).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from fulqrun_ml.analytics.health import backtest, period_table, predictor_quality
from fulqrun_ml.analytics.market import competitor_differences, win_rates
from fulqrun_ml.analytics.market_report import market_deals
from fulqrun_ml.analytics.trends import monthly_counts, stl_summary, trend_change_points
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_competition import CompetitionScenario
from fulqrun_ml.data.simulator_slippage import SlippageStory
from fulqrun_ml.data.validation import validate_crm
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_bytes, atomic_write_json

PREDICTORS = ("health", "persistence", "coverage_rule")
ENTRY_MONTHS_TOLERANCE = 4  # closes lag creation by a sales cycle (~2-3 months): a detection this late still counts


def interval(values: list[float], bounds: tuple[float, float] = (-np.inf, np.inf)) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds (clipped to the quantity's possible range)."""
    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    low, high = np.clip([x.mean() - half, x.mean() + half], *bounds)
    return {"mean": round(float(x.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "per_seed": [round(float(v), 4) for v in x]}  # fmt: skip


def share(hits: list[bool]) -> dict[str, Any]:
    """A count over seeds with its Wilson 95% interval (a t-interval over 0/1 values would leave [0, 1])."""
    low, high = proportion_confint(sum(hits), len(hits), alpha=0.05, method="wilson")
    return {"hits": int(sum(hits)), "seeds": len(hits), "share": round(sum(hits) / len(hits), 4),
            "low": round(float(low), 4), "high": round(float(high), 4)}  # fmt: skip


def simulated(seed: int, n: int) -> tuple[Any, pd.DataFrame]:
    crm = simulate_crm(
        n_opportunities=n, seed=seed, competition=CompetitionScenario(), slippage=SlippageStory(amount_noise_sd=0.3)
    )
    return validate_crm(crm.tables).tables, crm.latent


def pipeline_seed(tables: Any) -> dict[str, Any]:
    predictions = backtest(period_table(tables))
    return {"quality": predictor_quality(predictions), "predictions": predictions}


def market_seed(tables: Any, latent: pd.DataFrame, scenario: CompetitionScenario) -> dict[str, Any]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "analytics" / "competitive.yaml"))
    deals = market_deals(tables, cfg["regions"], cfg["burn_in_days"])
    truth = latent.set_index("opportunity_id").reindex(deals["id"])
    deals = deals.assign(p_true=truth["true_win_probability"].to_numpy(), cause=truth["loss_cause"].to_numpy())
    cells = win_rates(deals, ["competitor", "quarter"])
    true_cell = deals.groupby(["competitor", "quarter"])["p_true"].mean().to_numpy()
    covered = (cells["low"].to_numpy() <= true_cell) & (true_cell <= cells["high"].to_numpy())
    diffs = competitor_differences(deals).set_index("competitor")
    base = deals.loc[deals["competitor"] == "none", "p_true"].mean()
    true_diff = deals.groupby("competitor")["p_true"].mean().reindex(diffs.index) - base
    onset = pd.Timestamp(tables.opportunities["created_at"].min()).normalize() + pd.Timedelta(days=scenario.entry_day)
    detection = {}
    for penalty in ("bic", "null"):
        region_points = trend_change_points(deals, "account_region", cfg["min_segment_months"], penalty)
        emea = [p for p in region_points if p["account_region"] == scenario.entry_region]
        lag = [(pd.Timestamp(p["month"] + "-01", tz="UTC") - onset).days / 30.4 for p in emea]
        hit = [m for m in lag if -1.0 <= m <= ENTRY_MONTHS_TOLERANCE]
        # Only the other account regions are free of any true change: industries and competitors mix EMEA in.
        detection[penalty] = {
            "detected": bool(hit),
            "lag_months": round(min(hit, key=abs), 2) if hit else None,
            "points": emea,
            "false_alarms": len([p for p in region_points if p["account_region"] != scenario.entry_region]),
        }
    won = deals[deals["won"]]
    months = won["closed_at"].dt.tz_localize(None).dt.to_period("M").dt.to_timestamp()
    series = won.groupby(months)["value"].sum()
    stl = stl_summary(series.reindex(pd.date_range(series.index.min(), series.index.max(), freq="MS"), fill_value=0))
    lost = deals[~deals["won"]]
    return {
        "cells": len(cells),
        "cell_coverage": float(covered.mean()),
        "difference": {
            c: {
                "estimate": float(diffs.loc[c, "difference"]),
                "low": float(diffs.loc[c, "low"]),
                "high": float(diffs.loc[c, "high"]),
                "truth": float(true_diff[c]),
            }
            for c in diffs.index
        },
        "difference_coverage": float(((diffs["low"] <= true_diff) & (true_diff <= diffs["high"])).mean()),
        "detection": detection,
        "entrant_detected": detection["bic"]["detected"],
        "false_alarm_groups": len(cfg["regions"]) - 1,
        "industry_points": trend_change_points(deals, "industry", cfg["min_segment_months"]),
        "stl": stl,
        "loss_reason_agreement": float((lost["loss_reason"] == lost["cause"]).mean()),
        "emea_monthly": monthly_counts(deals, "account_region")[scenario.entry_region],
    }


def plot_pipeline(predictions: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, name in zip(axes, PREDICTORS, strict=True):
        ax.scatter(predictions[name], predictions["attainment"], s=8, alpha=0.5)
        top = float(np.nanmax(predictions[["attainment", name]].to_numpy()))
        ax.plot([0, top], [0, top], color="grey", lw=1)
        ax.set_xlabel(f"predicted ({name})")
        ax.set_title(name)
    axes[0].set_ylabel("actual attainment (bookings / quota)")
    fig.suptitle("Rep x quarter attainment, rolling-origin backtest (seed 0)")
    _save(fig, path)


def plot_market(emea: pd.DataFrame, onset: pd.Timestamp, path: Path) -> None:
    rate = emea["wins"] / emea["decided"].replace(0, np.nan)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(emea.index, rate, marker="o")
    ax.axvline(onset.tz_localize(None), color="red", ls="--", label="entrant onset (deal creation)")
    ax.set_ylabel("EMEA win rate by close month")
    ax.legend()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-opportunities", type=int, default=4000)
    parser.add_argument("--out-dir", default=str(REPO_ROOT / "reports"))
    args = parser.parse_args()
    out = Path(args.out_dir)
    scenario = CompetitionScenario()
    started = time.perf_counter()
    pipe, market = [], []
    for seed in args.seeds:
        tables, latent = simulated(seed, args.n_opportunities)
        pipe.append(pipeline_seed(tables))
        market.append(market_seed(tables, latent, scenario))
        print(f"seed {seed}: {pipe[-1]['quality']['health']} entrant {market[-1]['entrant_detected']}", flush=True)
    seconds = round(time.perf_counter() - started, 1)
    sim = {"n_opportunities": args.n_opportunities, "seeds": args.seeds, "competition": "CompetitionScenario()",
           "amount_noise_sd": 0.3}  # fmt: skip
    quality: dict[str, Any] = {
        name: {m: interval([p["quality"][name][m] for p in pipe]) for m in ("mae", "spearman", "pearson")}
        for name in PREDICTORS
    }
    paired = {
        f"health_minus_{base}": {m: interval([p["quality"]["health"][m] - p["quality"][base][m] for p in pipe])
                                 for m in ("mae", "spearman")}
        for base in ("persistence", "coverage_rule")
    }  # fmt: skip
    pipeline_report = {
        "what": "health score = ridge-predicted attainment from point-in-time pipeline metrics at each quarter start,"
        " refitted on earlier quarters only; rows = rep x quarter; quota = rep run rate (mean bookings of up to"
        " 4 past quarters)",
        "simulator": sim,
        "rows_per_seed": [p["quality"]["health"]["rows"] for p in pipe],
        "predictors": quality,
        "paired_differences": paired,
        "seconds": seconds,
        "machine": machine_info(),
    }
    onset = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=scenario.entry_day)
    market_report = {
        "simulator": sim
        | {
            "truth": {
                "effects": dict(zip(("none", "apex", "brightline", "corvid"), scenario.effect, strict=True)),
                "entrant": scenario.entrant,
                "entry_region": scenario.entry_region,
                "entry_day": scenario.entry_day,
                "entrant_effect": scenario.entrant_effect,
            }
        },
        "competitor_quarter_interval_coverage": interval([m["cell_coverage"] for m in market], (0, 1)),
        "competitor_difference_interval_coverage": interval([m["difference_coverage"] for m in market], (0, 1)),
        "competitor_differences_seed0": market[0]["difference"],
        "entrant_change_point": {
            penalty: {
                "detected": share([m["detection"][penalty]["detected"] for m in market]),
                "lag_months_after_onset": [m["detection"][penalty]["lag_months"] for m in market],
                "false_alarms": sum(m["detection"][penalty]["false_alarms"] for m in market),
                "region_series_without_change": sum(m["false_alarm_groups"] for m in market),
                "points_seed0": market[0]["detection"][penalty]["points"],
            }
            for penalty in ("bic", "null")
        },
        "industry_change_points_seed0": market[0]["industry_points"],
        "stl_bookings": {
            "seasonal_strength": interval([m["stl"]["seasonal_strength"] for m in market], (0, 1)),
            "peak_in_quarter_month_3": share([m["stl"]["peak_position"] == 3 for m in market]),
        },
        "loss_reason_agreement_with_true_cause": interval([m["loss_reason_agreement"] for m in market], (0, 1)),
        "loss_reason_agreement_expected": round(1 - scenario.misreport * 3 / 4, 4),
        "seconds": seconds,
        "machine": machine_info(),
    }
    atomic_write_json(out / "pipeline_analytics.json", pipeline_report)
    atomic_write_json(out / "market_intelligence.json", market_report)
    plot_pipeline(pipe[0]["predictions"], out / "pipeline_analytics.png")
    plot_market(market[0]["emea_monthly"], onset, out / "market_intelligence.png")
    print(json.dumps({"pipeline": quality, "paired": paired}, indent=1))


if __name__ == "__main__":
    main()
