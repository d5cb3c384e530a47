"""`data.eval_sample_rows`: evaluate on a fixed-size random sample of the validation and test splits, stated.

Why: at 1M deals the holdout has ~360k rows and validation ~230k, and the offline evaluation (calibration fit,
metrics, fairness by group and its mitigation, every one predicting the whole split again) takes longer than a
warm-start fit. A metric on 50k rows stratified by label is within about +-0.004 AUC of the whole split's, which
is far less than what a warm start is judged on; the run record says what was evaluated (`sample_record`,
`auc_interval`), so the number is never passed off as the whole holdout's. Off by default: full runs evaluate all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def stratified_sample(frame: pd.DataFrame, rows: int, seed: int) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """At most `rows` rows of `frame` drawn without replacement, each label value keeping its share (rounded), in
    the frame's own (time) order; with what was drawn. The frame itself (and None) when it is no larger."""
    if rows < 1:
        raise ValueError(f"data.eval_sample_rows must be a positive number of rows, got {rows}")
    if len(frame) <= rows:
        return frame, None
    rng = np.random.default_rng(seed)
    labels = frame["label"].to_numpy()
    chosen = []
    for value in np.unique(labels):
        where = np.flatnonzero(labels == value)
        take = max(1, round(rows * len(where) / len(frame)))
        chosen.append(rng.choice(where, size=min(take, len(where)), replace=False))
    index = np.sort(np.concatenate(chosen))
    sample = frame.iloc[index].reset_index(drop=True)
    positives = int((sample["label"] == 1).sum())
    return sample, {
        "rows": len(sample),
        "of_rows": len(frame),
        "seed": seed,
        "stratified_by": "label",
        "positives": positives,
        "negatives": len(sample) - positives,
    }


def auc_interval(auc: float, record: dict[str, Any], z: float = 1.96) -> list[float]:
    """A 95% interval for the whole split's AUC from the sample's: Hanley & McNeil's standard error of an AUC on
    these positives and negatives, times the finite-population correction sqrt(1 - rows / of_rows) (the sample
    is drawn from that split, not from an infinite population)."""
    pos, neg = record["positives"], record["negatives"]
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (pos - 1) * (q1 - auc * auc) + (neg - 1) * (q2 - auc * auc)) / (pos * neg)
    error = z * math.sqrt(max(variance, 0.0) * (1 - record["rows"] / record["of_rows"]))
    return [round(auc - error, 5), round(auc + error, 5)]


def sample_record(samples: dict[str, dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    """What the run record says about a sampled evaluation: per split the sample, and for the holdout the model's
    AUC interval for the whole split."""
    out = {split: dict(record) for split, record in samples.items()}
    if "test" in out and "auc" in metrics.get("model", {}):
        out["test"]["auc_interval_95"] = auc_interval(float(metrics["model"]["auc"]), out["test"])
    return out
