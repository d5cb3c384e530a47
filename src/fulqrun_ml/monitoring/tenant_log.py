"""The prediction log as one organisation sees it: only rows whose entity id carries that organisation.

Why the organisation rides in the entity id: the Triton backends log whatever `entity_id` the request names
(serving/prediction_spool.py) and know nothing of tenants. A tenant-aware caller sends scoped ids
(`@<org>/<id>`, data/tenancy.py), so every logged row carries its organisation without a schema change, and the
by-id endpoint reads the same scoped keys from Redis. Rows without an organisation (raw requests that named no
entity) belong to no tenant: they are never returned to one (fail closed).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from fulqrun_ml.data.tenancy import TenantAccessError, check_org, split_scoped_id
from fulqrun_ml.monitoring.prediction_log import read_predictions
from fulqrun_ml.monitoring.prediction_store import PredictionStore


def organisation_of(entity_ids: pd.Series) -> pd.Series:
    """The organisation each logged row carries (None when its entity id is not scoped)."""
    return entity_ids.map(lambda e: None if e is None or pd.isna(e) else split_scoped_id(e)[0])


def org_predictions(
    store: PredictionStore,
    organization_id: str,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """`read_predictions` restricted to one organisation, entity ids given back unscoped, plus `organization_id`."""
    org = check_org(organization_id)
    frame = read_predictions(store, model, since, until)
    if frame.empty:
        return frame.assign(organization_id=pd.Series(dtype=object))
    owner = organisation_of(frame["entity_id"])
    mine = frame[owner.eq(org).to_numpy()].copy()
    mine["entity_id"] = [split_scoped_id(e)[1] for e in mine["entity_id"]]
    mine["organization_id"] = org
    return mine.reset_index(drop=True)


def prediction_for(store: PredictionStore, organization_id: str, request_id: str) -> pd.DataFrame:
    """The logged rows of one request, refused unless the request was made for this organisation; a request of
    another organisation is refused exactly like an unknown one."""
    frame = org_predictions(store, organization_id)
    rows = frame[frame["request_id"].astype(str) == str(request_id)] if not frame.empty else frame
    if rows.empty:
        raise TenantAccessError(f"prediction request '{request_id}' is not found in organisation '{organization_id}'")
    return rows.reset_index(drop=True)
