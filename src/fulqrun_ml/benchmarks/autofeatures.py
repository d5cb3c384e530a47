"""Does automated feature generation pay? Generated aggregates selected by validation gain vs the hand-declared set.

For each task (deal win, lead conversion) and each simulator seed: build point-in-time snapshots, the
hand-declared features and every generated candidate (`features/generated.py`), audit all of them for
leakage, split by time (train < val < test, labels embargoed), then

1. rank the candidates by LightGBM split gain on train (one fit with hand + all candidates, early-stopped on val);
2. walk the top-ranked candidates greedily, keeping one only if validation AUC rises by `min_gain`;
3. score on the untouched test period: hand only, hand + selected, and hand + all candidates (no selection).

The report states the generated share of the final feature set and the AUC lift with an interval over seeds.
LightGBM is the judge because it is the strongest baseline on these tables and fits in a second; the selection
never sees the test period.

    python scripts/bench_autofeatures.py [--seeds 0 1 2] [--n-opportunities 4000]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.snapshots import deal_win_snapshots, snapshot_dates, time_split
from fulqrun_ml.data.task_snapshots import lead_conversion_snapshots
from fulqrun_ml.features.audit import audit_point_in_time
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.features.generated import compute_generated_features, generate_features, generated_source_times
from fulqrun_ml.features.lead_features import LEAD_FEATURES, compute_lead_features
from fulqrun_ml.features.spec import FeatureSpec
from fulqrun_ml.machine import machine_info

REPORT = Path("reports/bench_autofeatures.json")
LGB_PARAMS = {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 40, "subsample": 0.8,
              "subsample_freq": 1, "colsample_bytree": 0.8, "verbose": -1}  # fmt: skip


@dataclass(frozen=True)
class TaskSetup:
    """What differs between the tasks: the entity, its snapshot builder and its hand-declared features."""

    entity: str
    id_column: str
    spec: FeatureSpec
    horizon_days: int


TASKS = {
    "deal_win": TaskSetup("opportunity", "opportunity_id", DEAL_WIN_FEATURES, 180),
    "lead_conversion": TaskSetup("lead", "lead_id", LEAD_FEATURES, 90),
}


def _frames(task: str, seed: int, n_opportunities: int) -> tuple[pd.DataFrame, list[str], list[str], dict]:
    setup = TASKS[task]
    tables = simulate_crm(
        n_opportunities=n_opportunities, n_companies=n_opportunities // 5, n_reps=20, seed=seed
    ).tables
    dates = snapshot_dates(tables, 14, 60, setup.horizon_days)
    if task == "deal_win":
        snaps = deal_win_snapshots(tables, dates, setup.horizon_days)
        hand = compute_deal_features(tables, snaps[[setup.id_column, "as_of"]])
    else:
        snaps = lead_conversion_snapshots(tables, dates, setup.horizon_days)
        hand = compute_lead_features(tables, snaps[[setup.id_column, "as_of"]])
    candidates = generate_features()
    generated = compute_generated_features(tables, snaps, candidates, entity=setup.entity)
    audit = audit_point_in_time(generated_source_times(generated, snaps, candidates), [f.name for f in candidates])
    frame = pd.concat([snaps.reset_index(drop=True), hand[setup.spec.names].reset_index(drop=True), generated], axis=1)
    frame["split"] = time_split(dates, 0.15, 0.2).assign(frame).to_numpy()
    for cat in setup.spec.categorical:
        frame[cat.name] = frame[cat.name].astype("category")
    return frame, setup.spec.names, [f.name for f in candidates], audit


def _fit(frame: pd.DataFrame, columns: list[str], target: str = "label") -> lgb.LGBMClassifier:
    train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]
    model = lgb.LGBMClassifier(n_estimators=600, **LGB_PARAMS)
    model.fit(
        train[columns], train[target], eval_X=(val[columns],), eval_y=(val[target],),
        callbacks=[lgb.early_stopping(40, verbose=False)],
    )  # fmt: skip
    return model


def _auc(model: lgb.LGBMClassifier, frame: pd.DataFrame, columns: list[str], split: str) -> float:
    part = frame[frame["split"] == split]
    return float(roc_auc_score(part["label"], model.predict_proba(part[columns])[:, 1]))


def select_by_validation_gain(
    frame: pd.DataFrame, hand: list[str], candidates: list[str], top_k: int, min_gain: float
) -> tuple[list[str], list[dict[str, Any]]]:
    """Greedy forward selection over the candidates LightGBM ranks highest; returns the kept names and the walk."""
    ranked = _fit(frame, hand + candidates)
    gains = ranked.booster_.feature_importance("gain")
    order = sorted(candidates, key=lambda name: -gains[(hand + candidates).index(name)])[:top_k]
    kept: list[str] = []
    best = _auc(_fit(frame, hand), frame, hand, "val")
    walk = [{"feature": None, "val_auc": best, "kept": True}]
    for name in order:
        columns = hand + kept + [name]
        score = _auc(_fit(frame, columns), frame, columns, "val")
        keep = score >= best + min_gain
        walk.append({"feature": name, "val_auc": score, "kept": keep})
        if keep:
            kept.append(name)
            best = score
    return kept, walk


def run_seed(task: str, seed: int, n_opportunities: int, top_k: int, min_gain: float) -> dict[str, Any]:
    frame, hand, candidates, audit = _frames(task, seed, n_opportunities)
    selected, walk = select_by_validation_gain(frame, hand, candidates, top_k, min_gain)
    arms = {"hand": hand, "hand_plus_selected": hand + selected, "hand_plus_all_generated": hand + candidates}
    test_auc = {arm: _auc(_fit(frame, cols), frame, cols, "test") for arm, cols in arms.items()}
    return {
        "seed": seed,
        "rows": {s: int((frame["split"] == s).sum()) for s in ("train", "val", "test")},
        "candidates": len(candidates),
        "selected": selected,
        "generated_share": len(selected) / (len(hand) + len(selected)),
        "test_auc": test_auc,
        "lift_selected": test_auc["hand_plus_selected"] - test_auc["hand"],
        "lift_all_generated": test_auc["hand_plus_all_generated"] - test_auc["hand"],
        "selection_walk": walk,
        "leakage_audit": audit,
    }


def _interval(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return {"mean": float(arr.mean()), "low": float("nan"), "high": float("nan")}
    half = stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    return {"mean": float(arr.mean()), "low": float(arr.mean() - half), "high": float(arr.mean() + half)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-opportunities", type=int, default=4000)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--min-gain", type=float, default=0.001)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for task in args.tasks:
        runs = [run_seed(task, seed, args.n_opportunities, args.top_k, args.min_gain) for seed in args.seeds]
        results[task] = {
            "hand_features": len(TASKS[task].spec.names),
            "candidates": runs[0]["candidates"],
            "generated_share": _interval([r["generated_share"] for r in runs]),
            "auc_lift_selected": _interval([r["lift_selected"] for r in runs]),
            "auc_lift_all_generated": _interval([r["lift_all_generated"] for r in runs]),
            "test_auc_hand": _interval([r["test_auc"]["hand"] for r in runs]),
            "test_auc_hand_plus_selected": _interval([r["test_auc"]["hand_plus_selected"] for r in runs]),
            "runs": runs,
        }
        print(f"{task}: lift {results[task]['auc_lift_selected']}, share {results[task]['generated_share']}")
    report = {
        "benchmark": "autofeatures",
        "machine": machine_info(),
        "settings": {**vars(args), "out": str(args.out), "lightgbm": LGB_PARAMS},
        "seconds": round(time.perf_counter() - started, 1),
        "tasks": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
