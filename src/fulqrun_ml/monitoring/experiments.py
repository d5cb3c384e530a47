"""A/B experiments: a config, sticky assignment, and an always-valid sequential analysis that stops by itself.

    fulqrun-ml experiment assign   --config deal_win_next_step --ids OPP-1 OPP-2 ...
    fulqrun-ml experiment analyse  --config deal_win_next_step --outcomes outcomes.parquet [--out result.json]
    fulqrun-ml experiment simulate --config deal_win_next_step [--runs 200]

An experiment (configs/ab_test/*.yaml) names its variants (model versions or recommendation policies) with
split weights, a binary metric, the minimum detectable effect (absolute) and alpha; assignment is a sticky
salted hash of the entity id (`experiments_config`).

Analysis (`analyse_outcomes`) replays the outcomes in arrival order and looks after every one of them with
the mSPRT of `experiments_stats`: because its p-value is always valid, looking continuously costs nothing,
and the experiment stops at the first look where p < alpha (or at `max_samples`). With more than one
treatment, each is compared with the control at alpha / (k - 1) (Bonferroni). A sample-ratio-mismatch check
(chi-square of the arm counts against the weights) flags broken assignment or logging before anyone trusts
an effect. `experiments_sim` proves the error rates on the CRM simulator (reports/bench_ab.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.monitoring.experiments_config import (
    DEFAULT_EXPERIMENT,
    ExperimentConfig,
    ExperimentError,
    assign,
    assign_indices,
    bucket,
    load_experiment,
)
from fulqrun_ml.monitoring.experiments_sim import simulate_validity
from fulqrun_ml.monitoring.experiments_stats import msprt_path, z_test
from fulqrun_ml.registry.locking import atomic_write_json

SRM_P_THRESHOLD = 0.001  # the usual sample-ratio-mismatch alarm level (a real mismatch gives p ~ 1e-10)


def _outcomes(experiment: ExperimentConfig, frame: pd.DataFrame, order_by: str | None) -> pd.DataFrame:
    """Checked, ordered outcomes with a variant index per row."""
    unit, outcome = experiment.unit, experiment.outcome_column
    for column in (unit, outcome):
        if column not in frame.columns:
            raise ExperimentError(column, f"the outcomes need this column (have {list(frame.columns)})")
    if frame[unit].isna().any() or frame[unit].duplicated().any():
        raise ExperimentError(unit, "every entity needs exactly one outcome (missing or duplicated ids)")
    values = pd.to_numeric(frame[outcome].astype("object"), errors="coerce")
    if values.isna().any() or not values.isin([0, 1]).all():
        bad = frame.loc[values.isna() | ~values.isin([0, 1]), outcome].head(3).tolist()
        raise ExperimentError(outcome, f"a binary metric needs 0/1 (or true/false) outcomes, got e.g. {bad}")
    if order_by is not None:
        if order_by not in frame.columns:
            raise ExperimentError(order_by, f"cannot order by a missing column (have {list(frame.columns)})")
        frame = frame.sort_values(order_by, kind="stable")
    ids = frame[unit].astype(str).to_list()
    arm = assign_indices(experiment, ids)
    if "variant" in frame.columns:
        expected = np.array([v.name for v in experiment.variants])[arm]
        wrong = int((frame["variant"].astype(str).to_numpy() != expected).sum())
        if wrong:
            raise ExperimentError("variant", f"{wrong} rows disagree with the sticky assignment (logging bug?)")
    return pd.DataFrame({"arm": arm, "outcome": values.loc[frame.index].to_numpy(dtype=int)})


def analyse_outcomes(experiment: ExperimentConfig, frame: pd.DataFrame, order_by: str | None = None) -> dict:
    """Replay outcomes in order, looking after each; each treatment stops at its first always-valid
    rejection or at `max_samples` total outcomes, and is reported as it stood at that moment."""
    data = _outcomes(experiment, frame, order_by)
    if data.empty:
        raise ExperimentError(experiment.outcome_column, "the outcomes file has no rows")
    k = len(experiment.variants)
    alpha_each = experiment.alpha / (k - 1)
    arm, outcome = data["arm"].to_numpy(), data["outcome"].to_numpy()
    n_total = np.arange(1, len(data) + 1)
    counts = {i: (np.cumsum(arm == i), np.cumsum((arm == i) & (outcome == 1))) for i in range(k)}
    comparisons = []
    for j in range(1, k):
        (n_a, s_a), (n_b, s_b) = counts[0], counts[j]
        path = msprt_path(
            n_a, s_a, n_b, s_b, tau=experiment.tau, alpha=alpha_each, min_per_arm=experiment.min_samples_per_arm
        )
        hit = np.flatnonzero(path.rejected)
        capped = np.flatnonzero(n_total >= experiment.max_samples)
        if hit.size and (not capped.size or hit[0] <= capped[0]):
            at, status = int(hit[0]), "significant"
        elif capped.size:
            at, status = int(capped[0]), "max_samples_reached"
        else:
            at, status = len(data) - 1, "continue"
        _, z_p = z_test(n_a[at], s_a[at], n_b[at], s_b[at])
        effect = float(path.diff[at])
        comparisons.append(
            {
                "control": experiment.variants[0].name,
                "treatment": experiment.variants[j].name,
                "status": status,
                "decision": _decision(status, effect, experiment.variants[j].name),
                "stopped_at_n": at + 1 if status != "continue" else None,
                "n_control": int(n_a[at]),
                "n_treatment": int(n_b[at]),
                "rate_control": float(s_a[at] / max(n_a[at], 1)),
                "rate_treatment": float(s_b[at] / max(n_b[at], 1)),
                "effect": effect,
                "always_valid_p_value": float(path.p_value[at]),
                "always_valid_ci": [float(path.ci_low[at]), float(path.ci_high[at])],
                "alpha": alpha_each,
                "fixed_horizon_z_test_p_value_at_stop": float(z_p),
            }
        )
    arm_counts = np.bincount(arm, minlength=k)
    expected = np.diff(np.concatenate([[0.0], experiment.cumulative_weights])) * len(data)
    srm_p = float(stats.chisquare(arm_counts, expected).pvalue)
    done = all(c["status"] != "continue" for c in comparisons)
    return {
        "experiment": experiment.name,
        "metric": experiment.metric_name,
        "status": "stopped" if done else "running",
        "n_outcomes": len(data),
        "arms": {
            v.name: {"n": int(arm_counts[i]), "successes": int(outcome[arm == i].sum()), "weight": v.weight}
            for i, v in enumerate(experiment.variants)
        },
        "sample_ratio_mismatch": {"p_value": srm_p, "flagged": srm_p < SRM_P_THRESHOLD},
        "alpha": experiment.alpha,
        "minimum_detectable_effect": experiment.minimum_detectable_effect,
        "mixing_sd": experiment.tau,
        "comparisons": comparisons,
    }


def _decision(status: str, effect: float, treatment: str) -> str:
    if status == "significant":
        return f"{treatment} {'raises' if effect > 0 else 'lowers'} the rate (always-valid test)"
    if status == "max_samples_reached":
        return "no difference detected at max_samples: any true effect is likely inside the interval"
    return "keep collecting: no conclusion yet (looking again later is safe)"


def read_outcomes(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ExperimentError("outcomes", f"no such file: {path}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ExperimentError("outcomes", f"expected a .parquet or .csv file, got {path.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fulqrun-ml experiment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    p_assign = sub.add_parser("assign", help="print the variant of each entity id (JSON lines)")
    p_assign.add_argument("--config", default=DEFAULT_EXPERIMENT)
    p_assign.add_argument("--ids", nargs="+", required=True)
    p_analyse = sub.add_parser("analyse", help="always-valid sequential analysis of an outcomes file")
    p_analyse.add_argument("--config", default=DEFAULT_EXPERIMENT)
    p_analyse.add_argument("--outcomes", type=Path, required=True, help=".parquet or .csv: <unit>, <outcome>")
    p_analyse.add_argument("--order-by", default=None, help="column giving arrival order (default: file order)")
    p_analyse.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    p_sim = sub.add_parser("simulate", help="A/A and A/B runs on the CRM simulator: error rates and power")
    p_sim.add_argument("--config", default=DEFAULT_EXPERIMENT)
    p_sim.add_argument("--runs", type=int, default=200, help="A/A runs (and A/B runs) to simulate")
    p_sim.add_argument("--out", type=Path, default=None, help="also write the summary JSON here")
    args = parser.parse_args(argv)
    experiment = load_experiment(args.config)
    if args.action == "assign":
        for entity_id, variant in zip(args.ids, assign(experiment, args.ids), strict=True):
            print(json.dumps({"entity_id": entity_id, "variant": variant, "bucket": bucket(experiment, entity_id)}))
        return 0
    if args.action == "analyse":
        result = analyse_outcomes(experiment, read_outcomes(args.outcomes), args.order_by)
    else:
        result = simulate_validity(experiment, aa_runs=args.runs, ab_runs=args.runs)
        result = {k: v for k, v in result.items() if k != "curves"}
        result["config"] = asdict(experiment)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, result)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0
