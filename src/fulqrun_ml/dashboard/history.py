"""Per-deal probability history: the production deal-win model re-scored on the deal as it stood at past dates.

Why re-score point-in-time snapshots instead of reading a log: a prediction log holds only the dates a client
happened to ask, and none before the model was served; re-scoring shows what *this* model would have said on
every date the deal was open, using only the CRM rows known on that date. The features come from the one
definition training and serving use (`features.deal_features.compute_deal_features` on
`data.snapshots.open_deals_as_of` rows, as `DealWinBuilder.scoring_rows` builds them), and the scores from the
exported ONNX graph Triton serves, so the last point (at extraction) equals the deal's score on the Deals page.
The CRM is cut to the rows the features read for the one deal (`rows_read_for`), so a history costs a few
small group-bys, not scans of the whole CRM.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.snapshots import open_deals_as_of
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.deal_features import compute_deal_features, rows_read_for
from fulqrun_ml.registry.store import ModelVersion

EVERY_DAYS = 14  # the training snapshots' cadence (data.snapshot_every_days): the model saw deals this often


def history_dates(tables: CRMTables, opportunity_id: str, every_days: int = EVERY_DAYS) -> list[pd.Timestamp]:
    """Every `every_days` from the deal's first stage change to extraction (its open dates are kept later)."""
    history = tables.stage_history[tables.stage_history["opportunity_id"].astype(str) == str(opportunity_id)]
    if history.empty:
        raise FulqrunMLError(f"deal {opportunity_id}: no stage_history rows in the CRM, so no past state to score")
    start, end = pd.Timestamp(history["changed_at"].min()), pd.Timestamp(tables.extracted_at)
    dates = list(pd.date_range(start, end, freq=f"{int(every_days)}D"))
    return [*dates, end] if not dates or dates[-1] != end else dates


def probability_history(
    tables: CRMTables, version: ModelVersion, opportunity_id: str, every_days: int = EVERY_DAYS
) -> pd.DataFrame:
    """as_of, stage_index, rep_probability, probability: the model's view on each date the deal was open."""
    from fulqrun_ml.export.onnx_export import onnx_probabilities
    from fulqrun_ml.features.spec import FittedFeatureSpec

    ids = tables.opportunities["id"].astype(str)
    if not (ids == str(opportunity_id)).any():
        raise FulqrunMLError(f"deal {opportunity_id}: not in the CRM's opportunities table")
    deal = tables.opportunities["id"][ids == str(opportunity_id)].iloc[0]
    part = rows_read_for(tables, [deal])
    open_rows = [open_deals_as_of(part, d) for d in history_dates(part, str(opportunity_id), every_days)]
    index = pd.concat([rows[rows["opportunity_id"] == deal] for rows in open_rows], ignore_index=True)
    if index.empty:
        return pd.DataFrame(columns=["as_of", "stage_index", "rep_probability", "probability"])
    frame = index.merge(compute_deal_features(part, index), on=["opportunity_id", "as_of"])
    spec = FittedFeatureSpec.load(Path(version.path) / "feature_spec.json")
    probabilities = onnx_probabilities(Path(version.path) / "model.onnx", spec, frame)
    return pd.DataFrame(
        {
            "as_of": frame["as_of"].to_numpy(),
            "stage_index": frame["stage_index"].to_numpy(),
            "rep_probability": frame["rep_probability"].to_numpy(dtype=float),
            "probability": probabilities.astype(float),
        }
    )
