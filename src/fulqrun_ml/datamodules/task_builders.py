"""What each tabular CRM task contributes to the one snapshot datamodule (`datamodules/tabular.py`).

A builder answers four questions and nothing else: which (entity, as_of) rows exist with which label
(`snapshots`), what was known about them at as_of (`features`, with per-feature source timestamps for the
leakage audit), which columns score the label without a model (`baselines`: the rep's probability, a
stage median, the simulator's oracle) and which rows serving would score today (`scoring_rows`). The
datamodule does everything else the same way for every task: audit, time split with embargo, FeatureSpec
fit, tensors. Adding a tabular task is one builder here, one feature module and two small YAMLs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import SimulatedCRM, oracle_win_probability
from fulqrun_ml.data.snapshots import deal_win_snapshots, open_deals_as_of
from fulqrun_ml.data.survival_snapshots import close_timing_survival_snapshots
from fulqrun_ml.data.task_snapshots import (
    DECIDED_LEAD_STATUSES,
    account_snapshots,
    close_timing_targets,
    lead_conversion_snapshots,
)
from fulqrun_ml.features.account_features import ACCOUNT_FEATURES, compute_account_features
from fulqrun_ml.features.close_timing_features import CLOSE_TIMING_FEATURES, compute_close_timing_features
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.features.lead_features import LEAD_FEATURES, compute_lead_features
from fulqrun_ml.features.spec import FeatureSpec

TargetKind = Literal["binary", "regression", "survival"]
# The owning rep's days in the CRM at as_of (users.created_at): a group attribute for the fairness evaluation
# (evaluation/fairness.py bands it into `rep_tenure`), added after the data hash and never a model feature.
REP_TENURE_COLUMN = "rep_tenure_days"


def rep_tenure_days(tables: CRMTables, rep_ids: pd.Series, as_of: pd.Series) -> np.ndarray:
    """Days between each rep joining (users.created_at) and the row's as_of; NaN where the rep is unknown."""
    joined = pd.to_datetime(tables.users.drop_duplicates("id").set_index("id")["created_at"], utc=True)
    start = joined.reindex(rep_ids.to_numpy()).to_numpy()
    delta = pd.to_datetime(as_of, utc=True).to_numpy() - start
    return pd.to_timedelta(delta).total_seconds().to_numpy() / 86400.0


class SnapshotTaskBuilder(ABC):
    """One tabular task on CRM tables. The frame it yields has the entity key, `as_of`, `label`,
    `label_time`, every feature of `feature_spec` and the baseline columns."""

    name: ClassVar[str]
    entity: ClassVar[str]  # the id column of the entity a row describes
    kind: ClassVar[TargetKind]
    target_log1p: ClassVar[bool] = False  # regression: learn log1p(label) (heavy-tailed durations)
    scoring_file: ClassVar[str]  # where train() leaves today's rows (`open_deals.parquet` for deal win)
    # Embargo every row by as_of + horizon instead of the moment its label became known. Needed where the
    # label time depends on the label (a fixed-horizon "no event" is known only at the horizon's end, an event
    # earlier): embargoing by it would keep mostly positives next to a split boundary and bias train and val.
    embargo_by_horizon: ClassVar[bool] = False

    def __init__(self, feature_spec: FeatureSpec) -> None:
        self.feature_spec = feature_spec

    @abstractmethod
    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        """(entity, as_of) rows with label, label_time and baseline columns known at as_of."""

    @abstractmethod
    def features(
        self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
    ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
        """Feature columns per (entity, as_of) row, and with `with_sources` their newest source timestamps."""

    def baselines(self) -> dict[str, str]:
        """Report name -> frame column of model-free scores of the label (e.g. {"rep": "rep_probability"})."""
        return {}

    def fit_baselines(self, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """Baselines that must be learnt (from the training split only) are added here, after the split."""
        return frames

    def oracle(self, loaded: SimulatedCRM, frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
        """The best possible score given the simulator's latent truth (None where the story has none)."""
        return None

    def group_columns(self, tables: CRMTables, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Columns that describe who a row concerns for the fairness evaluation, not features (none by default)."""
        return {}

    @abstractmethod
    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        """The entities serving would score at extraction time, with their features."""


class DealWinBuilder(SnapshotTaskBuilder):
    """Open deal -> closes won (vs lost) within the horizon; baseline: the rep's stage probability."""

    name, entity, kind, scoring_file = "deal_win", "opportunity_id", "binary", "open_deals.parquet"

    def __init__(self, feature_spec: FeatureSpec = DEAL_WIN_FEATURES) -> None:
        super().__init__(feature_spec)

    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        return deal_win_snapshots(tables, dates, horizon_days)

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_deal_features(tables, index, with_sources=with_sources)

    def baselines(self) -> dict[str, str]:
        return {"rep": "rep_probability"}

    def group_columns(self, tables: CRMTables, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        owner = tables.opportunities.drop_duplicates("id").set_index("id")["assigned_to"]
        return {REP_TENURE_COLUMN: rep_tenure_days(tables, owner.reindex(frame["opportunity_id"]), frame["as_of"])}

    def oracle(self, loaded: SimulatedCRM, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
        truth = loaded.latent.set_index("opportunity_id")["true_win_probability"].reindex(frame["opportunity_id"])
        return oracle_win_probability(truth.to_numpy(), frame["stage_index"].to_numpy())

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        now = open_deals_as_of(tables, tables.extracted_at)
        return now.merge(compute_deal_features(tables, now), on=["opportunity_id", "as_of"])


class CloseTimingBuilder(DealWinBuilder):
    """Open deal that closes within the horizon -> days until it closes (won or lost).

    Regression on days (standardised); deals still open at the horizon are left out (as in deal win), so the model
    answers "if it closes within the horizon, when?". The baseline is the training split's median days to
    close per stage: the rep's `close_date` cannot be one, because the CRM overwrites it without history
    and its stored value is usually the actual close date, known only later."""

    # Days, not log days: a network fitted to log1p(days) predicts a geometric mean, biased low in days
    # (measured on the default simulator, MLP: RMSE 20.7 with log1p vs 18.9 on days; stage median 19.0).
    name, kind, target_log1p = "close_timing", "regression", False
    # The label *is* the label time: embargoing by it would drop exactly the long waits next to each split
    # boundary (measured on the default simulator: validation mean 19.8 days vs 32.3 on test).
    embargo_by_horizon = True

    def __init__(self, feature_spec: FeatureSpec = CLOSE_TIMING_FEATURES) -> None:
        super().__init__(feature_spec)

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_close_timing_features(tables, index, with_sources=with_sources)

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        now = open_deals_as_of(tables, tables.extracted_at)
        return now.merge(compute_close_timing_features(tables, now), on=["opportunity_id", "as_of"])

    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        frame = close_timing_targets(deal_win_snapshots(tables, dates, horizon_days))
        return frame.rename(columns={"label": "won"}).rename(columns={"days_to_close": "label"})

    def baselines(self) -> dict[str, str]:
        return {"stage_median": "stage_median_days"}

    def fit_baselines(self, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        train = frames["train"]
        medians = train.groupby("stage_index")["label"].median()
        overall = float(train["label"].median())
        return {
            split: frame.assign(stage_median_days=frame["stage_index"].map(medians).fillna(overall).to_numpy())
            for split, frame in frames.items()
        }

    def oracle(self, loaded: SimulatedCRM, frame: pd.DataFrame, horizon_days: int) -> None:
        return None


class CloseTimingSurvivalBuilder(CloseTimingBuilder):
    """Every open deal -> (closes within the horizon?, after how many days), censored at the horizon.

    Discrete-time survival rows (`data/survival_snapshots.py`): `label` is the event (closed won or lost within
    the horizon), `duration_days` the days to that close or exactly the horizon when censored. Censoring is
    administrative only (the snapshot grid ends one horizon before extraction), so no IPCW is needed. Same
    features and scoring rows as the regression; its baselines (Kaplan-Meier per stage and pooled) are curves,
    not columns, and are fitted on the training split by `tasks/survival_holdout.py`."""

    name, kind = "close_timing_survival", "survival"
    # A close is known when it happens, "still open" only at the horizon's end: embargo everything by as_of +
    # horizon so censored rows are not over-represented next to a split boundary.
    embargo_by_horizon = True

    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        return close_timing_survival_snapshots(tables, dates, horizon_days)

    def baselines(self) -> dict[str, str]:
        return {}

    def fit_baselines(self, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        return frames


class LeadConversionBuilder(SnapshotTaskBuilder):
    """Undecided lead -> converted within the horizon; oracle from the simulator's lead latent truth."""

    name, entity, kind, scoring_file = "lead_conversion", "lead_id", "binary", "open_leads.parquet"
    embargo_by_horizon = True  # conversions are known earlier than "not converted within the horizon"

    def __init__(self, feature_spec: FeatureSpec = LEAD_FEATURES) -> None:
        super().__init__(feature_spec)

    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        return lead_conversion_snapshots(tables, dates, horizon_days)

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_lead_features(tables, index, with_sources=with_sources)

    def oracle(self, loaded: SimulatedCRM, frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
        if loaded.lead_latent is None:
            return None
        truth = loaded.lead_latent.set_index("lead_id")["true_conversion_probability"].reindex(frame["lead_id"])
        return lead_oracle_probability(truth.to_numpy(), frame["lead_age_days"].to_numpy(), horizon_days)

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        leads, now = tables.leads, tables.extracted_at
        decided = leads["status"].isin(DECIDED_LEAD_STATUSES) & (leads["updated_at"] <= now)
        index = pd.DataFrame({"lead_id": leads.loc[~decided & (leads["created_at"] <= now), "id"], "as_of": now})
        return index.merge(compute_lead_features(tables, index), on=["lead_id", "as_of"])


# The simulator's lead story (simulator.py, point 7): a lead converts with probability p after a
# Gamma(3, scale 8) delay in days, or is disqualified after a Gamma(2, scale 15) delay.
CONVERT_DELAY = stats.gamma(3.0, scale=8.0)
DISQUALIFY_DELAY = stats.gamma(2.0, scale=15.0)


def lead_oracle_probability(p_convert: np.ndarray, age_days: np.ndarray, horizon_days: int) -> np.ndarray:
    """Bayes P(converts within the horizon | latent p, still undecided at age a) under the simulator's story:
    p (F_c(a + h) - F_c(a)) / (p S_c(a) + (1 - p) S_d(a))."""
    p, a = np.asarray(p_convert, dtype=float), np.asarray(age_days, dtype=float)
    undecided = p * CONVERT_DELAY.sf(a) + (1 - p) * DISQUALIFY_DELAY.sf(a)
    converts = p * (CONVERT_DELAY.cdf(a + horizon_days) - CONVERT_DELAY.cdf(a))
    return np.clip(converts / np.maximum(undecided, 1e-12), 0.0, 1.0)


class AccountBuilder(SnapshotTaskBuilder):
    """Customer account -> another won deal within the horizon (`expansion`) or not (`churn`)."""

    entity, kind, scoring_file = "company_id", "binary", "customers.parquet"
    embargo_by_horizon = True  # a next win is known when it happens, its absence only at the horizon's end

    def __init__(self, label: Literal["expansion", "churn"], feature_spec: FeatureSpec = ACCOUNT_FEATURES) -> None:
        if label not in ("expansion", "churn"):
            raise ValueError(f"label must be 'expansion' or 'churn', got {label!r}")
        super().__init__(feature_spec)
        self.label = label
        self.name = f"account_{label}"

    def snapshots(self, tables: CRMTables, dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
        frame = account_snapshots(tables, dates, horizon_days)
        return frame.assign(label=frame[self.label].astype(np.float32)).drop(columns=["expansion", "churn"])

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_account_features(tables, index, with_sources=with_sources)

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        now = tables.extracted_at
        wins = tables.stage_history[
            (tables.stage_history["to_stage"] == "closed_won") & (tables.stage_history["changed_at"] <= now)
        ]
        customers = tables.opportunities.set_index("id")["company_id"].reindex(wins["opportunity_id"]).unique()
        index = pd.DataFrame({"company_id": customers, "as_of": now})
        return index.merge(compute_account_features(tables, index), on=["company_id", "as_of"])
