"""The customer lifecycle tasks as snapshot builders for the one tabular datamodule (`datamodules/tabular.py`).

- `LifecycleStageBuilder` (multiclass): a customer's recorded stage one horizon later. Baselines are class
  distributions: `persistence` (the stage stays where it is) and `empirical` (the training split's transition
  counts from the current stage: the classic Markov-chain estimate); on simulated data the oracle is the
  story's TRUE transition probabilities.
- `CsatBuilder` (regression): the score of a customer's next CSAT answer. Baselines: the account's last score
  (the training mean where it has none) and the training mean; the oracle is the story's expected score.

Both read the churn snapshot's account features plus stage and CSAT history (`features/lifecycle_features.py`).
Multiclass baselines are column prefixes: `<prefix><stage>` holds P(stage) per row.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.lifecycle_snapshots import (
    ABSORBING,
    LIFECYCLE_STAGES,
    csat_snapshots,
    lifecycle_stage_snapshots,
    stages_as_of,
    true_next_stage,
)
from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.datamodules.task_builders import SnapshotTaskBuilder
from fulqrun_ml.features.lifecycle_features import LIFECYCLE_FEATURES, compute_lifecycle_features
from fulqrun_ml.features.spec import FeatureSpec

PERSISTENCE_SMOOTHING = 0.02  # probability mass the persistence baseline spreads over the other stages


def _customers_now(tables: CRMTables, compute) -> pd.DataFrame:
    """Customers not churned at extraction, with their features: what serving scores today."""
    states = tables.account_states
    now = stages_as_of(states, states["company_id"].unique(), tables.extracted_at)
    index = pd.DataFrame({"company_id": now[now.notna() & (now != ABSORBING)].index, "as_of": tables.extracted_at})
    return index.merge(compute(tables, index), on=["company_id", "as_of"])


class LifecycleStageBuilder(SnapshotTaskBuilder):
    """Customer not churned at as_of -> its lifecycle stage at as_of + horizon (softmax over LIFECYCLE_STAGES)."""

    name, entity, kind, scoring_file = "lifecycle_stage", "company_id", "multiclass", "customers_lifecycle.parquet"
    embargo_by_horizon = True  # the label is known at as_of + horizon, whatever it is
    classes: ClassVar[tuple[str, ...]] = LIFECYCLE_STAGES

    def __init__(self, feature_spec: FeatureSpec = LIFECYCLE_FEATURES) -> None:
        super().__init__(feature_spec)

    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        return lifecycle_stage_snapshots(tables, dates, horizon_days)

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_lifecycle_features(tables, index, with_sources=with_sources)

    def baselines(self) -> dict[str, str]:
        return {"persistence": "persistence__", "empirical": "empirical__"}

    def fit_baselines(self, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        k = len(self.classes)
        train = frames["train"]
        counts = np.full((k, k), 1e-3)  # from-stage x to-stage, a whisker so unseen moves keep a finite log loss
        from_index = train["stage_now"].map({s: i for i, s in enumerate(self.classes)}).to_numpy()
        np.add.at(counts, (from_index, train["label"].to_numpy(dtype=int)), 1.0)
        empirical = counts / counts.sum(axis=1, keepdims=True)
        out = {}
        for split, frame in frames.items():
            rows = frame["stage_now"].map({s: i for i, s in enumerate(self.classes)}).to_numpy(dtype=int)
            persistence = np.full((len(frame), k), PERSISTENCE_SMOOTHING / (k - 1))
            persistence[np.arange(len(frame)), rows] = 1.0 - PERSISTENCE_SMOOTHING
            columns = {f"persistence__{c}": persistence[:, i] for i, c in enumerate(self.classes)}
            columns |= {f"empirical__{c}": empirical[rows, i] for i, c in enumerate(self.classes)}
            out[split] = frame.assign(**columns)
        return out

    def oracle(self, loaded: SimulatedCRM, frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
        truth = getattr(loaded, "lifecycle_truth", None)
        return None if truth is None else true_next_stage(truth.transitions, frame, horizon_days)

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        return _customers_now(tables, compute_lifecycle_features)


class CsatBuilder(SnapshotTaskBuilder):
    """Customer answering a survey within the horizon -> its score (1-5), from what was known at as_of."""

    name, entity, kind, scoring_file = "csat", "company_id", "regression", "customers_csat.parquet"

    def __init__(self, feature_spec: FeatureSpec = LIFECYCLE_FEATURES) -> None:
        super().__init__(feature_spec)

    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        return csat_snapshots(tables, dates, horizon_days)

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_lifecycle_features(tables, index, with_sources=with_sources)

    def baselines(self) -> dict[str, str]:
        return {"last_score": "csat_last_score", "train_mean": "csat_train_mean"}

    def fit_baselines(self, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        mean = float(frames["train"]["label"].mean())
        return {
            split: frame.assign(
                csat_last_score=np.where(frame["csat_last"] > 0, frame["csat_last"], mean), csat_train_mean=mean
            )
            for split, frame in frames.items()
        }

    def oracle(self, loaded: SimulatedCRM, frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
        truth = getattr(loaded, "lifecycle_truth", None)
        if truth is None:
            return None
        expected = truth.surveys.set_index("survey_id")["expected_score"]
        return expected.reindex(frame["survey_id"]).to_numpy(dtype=np.float64)

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        return _customers_now(tables, compute_lifecycle_features)
