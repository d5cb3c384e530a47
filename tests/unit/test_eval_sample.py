"""`data.eval_sample_rows` (datamodules/eval_sample.py): a stratified sample of a split, and the interval it states
for the whole split's AUC. The interval is checked against the truth it claims to cover: the AUC of the whole
(synthetic) split, over 40 draws. Pure numpy on 20k rows: well under a second."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from fulqrun_ml.datamodules.eval_sample import auc_interval, sample_record, stratified_sample


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties take mean ranks): sklearn's value, without its per-call overhead."""
    positive = np.asarray(labels) == 1
    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.fixture(scope="module")
def split() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    label = (rng.random(20_000) < 0.3).astype(np.float32)
    score = rng.normal(size=label.size) + 0.9 * label  # a scorer with AUC ~0.74
    return pd.DataFrame({"as_of": np.arange(label.size), "label": label, "score": score})


def test_sample_keeps_the_label_shares_and_the_order(split):
    sample, record = stratified_sample(split, 4_000, seed=1)
    assert len(sample) == record["rows"] == 4_000 and record["of_rows"] == len(split)
    assert abs(sample["label"].mean() - split["label"].mean()) < 3e-4
    assert record["positives"] == int(sample["label"].sum())
    assert sample["as_of"].is_monotonic_increasing and sample["as_of"].is_unique
    same, none = stratified_sample(split.head(50), 100, seed=1)
    assert none is None and same is not None and len(same) == 50
    with pytest.raises(ValueError, match="eval_sample_rows"):
        stratified_sample(split, 0, seed=1)


def test_the_stated_interval_covers_the_whole_splits_auc(split):
    truth = roc_auc(split["label"], split["score"])
    covered, widths = 0, []
    for seed in range(40):
        sample, record = stratified_sample(split, 2_000, seed=seed)
        low, high = auc_interval(roc_auc(sample["label"], sample["score"]), record)
        covered += low <= truth <= high
        widths.append(high - low)
    assert covered >= 34, covered  # nominal 95%: 38 of 40 expected; under 34 has < 1% chance
    assert 0.03 < np.mean(widths) < 0.06  # and it is not covering by being wide
    record = sample_record({"test": record}, {"model": {"auc": 0.7}})
    assert record["test"]["auc_interval_95"][0] < 0.7 < record["test"]["auc_interval_95"][1]
