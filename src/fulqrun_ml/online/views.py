"""Feature views: which entity, which declared features, which compute function, how long a row stays fresh.

Why not Feast: every Feast release conflicts with the pinned stack (0.50+ needs numpy >= 2, <= 0.49 caps
pyarrow <= 17, all cap pandas < 3; ../shared/DEPENDENCIES.md). This package is a thin layer on redis-py that
keeps Feast's concepts: an *entity* (opportunity, lead) keyed by an id column, a *feature view* (a named,
versioned set of features of one entity with a TTL), *materialise* (compute and write the current rows to the
online store, `materialise.py`), *backfill* (compute past rows into the offline history, `materialise.py`)
and an offline store with point-in-time reads (`offline.py`).

One definition, two stores (no training/serving skew by construction): a view holds the SAME `FeatureSpec`
that training declares and the SAME point-in-time compute function the snapshot builders use
(`compute_deal_features`, `compute_lead_features`). The online writers (batch materialise, the stream
worker) and the offline store call `view.compute`, never a second implementation; `offline.skew_check`
verifies the claim on sampled entities.

A view's `version` is a hash of everything that defines its values (name, feature names and transforms, the
feature -> source declaration, the compute function's qualified name), so a changed definition lands under new
Redis keys instead of silently mixing with rows an older definition wrote. `view_for_version` ties a
registered model version to the view that can feed it, refusing a model trained on another feature set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.snapshots import open_deals_as_of
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features import deal_features, lead_features, meddpicc_deal, meddpicc_features, meddpicc_notes
from fulqrun_ml.features.spec import FeatureSpec

KEY_PREFIX = "fq:fv"
VIEWS_KEY = "fq:views"
# Reserved HASH fields next to the features (INTERFACE.md, "Redis layout").
AS_OF_FIELD, SEQ_FIELD, WRITTEN_FIELD = "_as_of", "_seq", "_written_ms"
DECIDED_LEAD_STATUSES = ("converted", "unqualified")  # as data/task_snapshots.py: a decided lead is not scored


class FeatureViewError(FulqrunMLError):
    """An unknown task or view, or a model whose inputs are not the view's features."""


def open_deal_ids(tables: CRMTables, as_of: pd.Timestamp) -> np.ndarray:
    """Deals open at as_of (from stage history, as the training snapshots choose them)."""
    return open_deals_as_of(tables, as_of)["opportunity_id"].to_numpy()


def open_lead_ids(tables: CRMTables, as_of: pd.Timestamp) -> np.ndarray:
    """Leads created by as_of and not yet decided then (the rule of `lead_conversion_snapshots`)."""
    leads = tables.leads
    decided_at = leads["updated_at"].where(leads["status"].isin(DECIDED_LEAD_STATUSES))
    return leads.loc[(leads["created_at"] <= as_of) & ~(decided_at <= as_of), "id"].to_numpy()


@dataclass(frozen=True)
class FeatureView:
    """A named, versioned set of one entity's features, computed by one point-in-time function.

    `compute(tables, index)` takes `index[[entity_column, "as_of"]]` and returns entity_column, as_of and
    `spec.names` in index order. `ttl`: a row older than this (now - as_of) is served flagged "stale".
    `sources` (feature -> source group, the builders' FEATURE_SOURCE) and `open_entities` (which entities are
    worth scoring at a time: open deals, undecided leads) are additions to the shared interface."""

    name: str
    entity: str
    entity_column: str
    spec: FeatureSpec
    compute: Callable[[CRMTables, pd.DataFrame], pd.DataFrame]
    ttl: timedelta
    sources: tuple[tuple[str, str], ...] = ()
    open_entities: Callable[[CRMTables, pd.Timestamp], np.ndarray] | None = None
    # The CRM rows `compute` reads for some entities (a speed-up, not part of the definition: the builder
    # proves slice == full CRM in its tests, so the version does not include it).
    rows_read_for: Callable[[CRMTables, Any], CRMTables] | None = None
    # Whether the CRM holds what `compute` needs (the optional MEDDPICC / notes tables): the stream worker skips
    # the view until it does, instead of failing every batch with the builder's refusal. Not in the version.
    ready: Callable[[CRMTables], bool] | None = None

    @property
    def version(self) -> str:
        """Short sha256 of the definition: a new definition is a new version (and new Redis keys)."""
        definition = {
            "name": self.name,
            "entity": self.entity,
            "entity_column": self.entity_column,
            "numeric": [[f.name, f.log1p, f.impute_missing] for f in self.spec.numeric],
            "categorical": [f.name for f in self.spec.categorical],
            "sources": sorted(self.sources),
            "compute": f"{self.compute.__module__}.{self.compute.__qualname__}",
        }
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.spec.numeric]

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.spec.categorical]

    def key(self, entity_id: str) -> str:
        """The Redis HASH holding one entity's newest features under this view version."""
        return f"{KEY_PREFIX}:{self.name}:{self.version}:{entity_id}"

    def compute_at(self, tables: CRMTables, entity_ids: Any, as_of: pd.Timestamp) -> pd.DataFrame:
        """The view's features for `entity_ids` at one as_of (through `compute`, the one definition)."""
        ids = np.asarray(list(entity_ids), dtype=object)
        index = pd.DataFrame({self.entity_column: ids, "as_of": pd.Timestamp(as_of)})
        return self.compute(self.rows_read_for(tables, ids) if self.rows_read_for else tables, index)

    def describe(self) -> dict[str, Any]:
        """What `fq:views` stores about the view (without the model list, which `store.register` keeps)."""
        return {
            "name": self.name,
            "version": self.version,
            "entity": self.entity,
            "entity_column": self.entity_column,
            "features": self.spec.names,
            "ttl_seconds": self.ttl.total_seconds(),
        }


# The compute functions are the builders themselves, so a view's version follows the builder's name.
DEAL_WIN_VIEW = FeatureView(
    name="deal_win_features",
    entity="opportunity",
    entity_column="opportunity_id",
    spec=deal_features.DEAL_WIN_FEATURES,
    compute=deal_features.compute_deal_features,  # type: ignore[arg-type]
    ttl=timedelta(hours=1),
    sources=tuple(sorted(deal_features.FEATURE_SOURCE.items())),
    open_entities=open_deal_ids,
    rows_read_for=deal_features.rows_read_for,
)
LEAD_CONVERSION_VIEW = FeatureView(
    name="lead_conversion_features",
    entity="lead",
    entity_column="lead_id",
    spec=lead_features.LEAD_FEATURES,
    compute=lead_features.compute_lead_features,  # type: ignore[arg-type]
    ttl=timedelta(hours=1),
    sources=tuple(sorted(lead_features.FEATURE_SOURCE.items())),
    open_entities=open_lead_ids,
)


def has_text_tables(tables: CRMTables) -> bool:
    """The CRM has a MEDDPICC history and deal notes: what `compute_deal_meddpicc_features` refuses without."""
    return meddpicc_features.has_meddpicc_history(tables) and meddpicc_notes.has_notes(tables, "opportunity")


MEDDPICC_SOURCES = (
    deal_features.FEATURE_SOURCE
    | meddpicc_features.FEATURE_SOURCE
    | dict.fromkeys(meddpicc_notes.DEAL_NOTE_FEATURES.names, "notes")
)
# Deal win with the MEDDPICC history and note cues (task=deal_win_meddpicc): the stream worker keeps it current
# from changes of meddpicc_events and notes too (affected.py), as soon as the CRM has those tables.
DEAL_WIN_MEDDPICC_VIEW = FeatureView(
    name="deal_win_meddpicc_features",
    entity="opportunity",
    entity_column="opportunity_id",
    spec=meddpicc_deal.DEAL_WIN_MEDDPICC_FEATURES,
    compute=meddpicc_deal.compute_deal_meddpicc_features,  # type: ignore[arg-type]
    ttl=timedelta(hours=1),
    sources=tuple(sorted(MEDDPICC_SOURCES.items())),
    open_entities=open_deal_ids,
    rows_read_for=deal_features.rows_read_for,
    ready=has_text_tables,
)
VIEWS: dict[str, FeatureView] = {
    "deal_win": DEAL_WIN_VIEW,
    "lead_conversion": LEAD_CONVERSION_VIEW,
    "deal_win_meddpicc": DEAL_WIN_MEDDPICC_VIEW,
}


def view_for_task(task: str) -> FeatureView:
    """The feature view feeding a task's models; a clear error for a task without one."""
    if task not in VIEWS:
        raise FeatureViewError(f"task '{task}' has no feature view; views exist for {sorted(VIEWS)}")
    return VIEWS[task]


def with_ttl(view: FeatureView, ttl: timedelta) -> FeatureView:
    """The same view with another TTL (a serving choice: it does not change the version or the keys)."""
    if ttl.total_seconds() <= 0:
        raise FeatureViewError(f"ttl must be positive, got {ttl}")
    return dataclasses.replace(view, ttl=ttl)


def view_for_version(version_metadata: Mapping[str, Any]) -> FeatureView:
    """The view that can feed a registered model version (its `metadata.json`): chosen by the version's task,
    and refused unless the model's input names are exactly the view's features, naming what is missing/extra.

    Why: a model trained on another feature set (an older or newer declaration) would be fed the wrong
    columns; the Triton backend matches by name, so the sets must be equal (order is free)."""
    task = version_metadata.get("task")
    if not task:
        raise FeatureViewError("the model version's metadata has no 'task': cannot choose its feature view")
    view = view_for_task(str(task))
    inputs = version_metadata.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, Mapping) and "name" in i for i in inputs):
        raise FeatureViewError("the model version's metadata field 'inputs' is not a list of {name, dtype}")
    model_names = [str(i["name"]) for i in inputs]
    missing = [n for n in model_names if n not in view.spec.names]
    extra = [n for n in view.spec.names if n not in model_names]
    if missing or extra:
        who = f"{version_metadata.get('name', task)} v{version_metadata.get('version', '?')}"
        raise FeatureViewError(
            f"model {who} was trained on another feature set than view {view.name}@{view.version}: "
            f"the view lacks {missing or 'nothing'}; the model does not read {extra or 'nothing'}"
        )
    return view
