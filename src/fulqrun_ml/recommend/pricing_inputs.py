"""The deals table pricing learns from and prices, from the simulator or from a CRM export plus a pricing file.

The contract has no discount, so a real CRM brings one in a pricing file (Parquet or CSV, one row per deal:
opportunity_id, discount[, competitor_present, discount_stage]); a missing optional column takes the config's
`data.defaults` value for every deal. Industry and size come from the account, `meddpicc_score` from the deal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FieldValidationError


def read_table(path: Path, field: str) -> pd.DataFrame:
    """A Parquet or CSV file, or an error naming the option that pointed at it."""
    if not path.is_file():
        raise FieldValidationError(field, f"file {path} does not exist")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)


def crm_pricing_deals(tables: CRMTables, pricing: pd.DataFrame, defaults: dict) -> pd.DataFrame:
    """Every deal with its segment, value, MEDDPICC score, logged discount and (closed deals) outcome."""
    for column in ("opportunity_id", "discount"):
        if column not in pricing.columns:
            raise FieldValidationError(column, "missing from the pricing file")
    if pricing["opportunity_id"].duplicated().any():
        raise FieldValidationError("opportunity_id", "the pricing file lists a deal twice")
    opps = tables.opportunities.merge(pricing, left_on="id", right_on="opportunity_id", how="inner")
    if opps.empty:
        raise FieldValidationError("opportunity_id", "no deal of the pricing file is in the CRM")
    company = tables.companies.set_index("id").reindex(opps["company_id"])
    closed = opps["stage"].isin(["closed_won", "closed_lost"]).to_numpy()
    won = pd.array(opps["stage"].eq("closed_won").to_numpy(), dtype="boolean")
    won[~closed] = pd.NA
    deals = pd.DataFrame(
        {
            "opportunity_id": opps["id"].to_numpy(),
            "industry": company["industry"].fillna("unknown").to_numpy(),
            "size": company["size"].fillna("unknown").to_numpy(),
            "value": pd.to_numeric(opps["value"], errors="coerce").to_numpy(dtype=float),
            "meddpicc_score": pd.to_numeric(opps["meddpicc_score"], errors="coerce").to_numpy(dtype=float),
            "discount": pd.to_numeric(opps["discount"], errors="coerce").to_numpy(dtype=float),
            "created_at": opps["created_at"].to_numpy(),
            "closed": closed,
            "won": won,
        }
    )
    for column in ("competitor_present", "discount_stage"):
        if column in opps.columns:
            deals[column] = opps[column].to_numpy()
        elif column in defaults:
            deals[column] = defaults[column]
        else:
            raise FieldValidationError(column, "missing from the pricing file and from data.defaults")
    deals["competitor_present"] = deals["competitor_present"].astype(bool)
    if np.isnan(deals["discount"].to_numpy()).any():
        raise FieldValidationError("discount", "a deal of the pricing file has no numeric discount")
    return deals
