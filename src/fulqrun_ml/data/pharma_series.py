"""Pharma contract tables -> one long series table (territory, HCP, week) that `task=forecast data=series` reads.

Why a plain long table and not a pharma-specific datamodule: the issue asks for TRx / NRx forecasts "with the
same forecaster", so prescriptions are handed over exactly as a user's weekly table would be, and every rule of
`data.series_table` (frequency, gaps, short series, hierarchy) applies unchanged. The columns:

- `territory` (territory name), `hcp` (HCP id): the id columns, top to bottom (hierarchy territory -> HCP);
- `week`: the week's Monday as a date (YYYY-MM-DD, no time zone: the grid is weekly);
- `trx`, `nrx`: the targets (empty on the plan rows after the extraction);
- `calls`, `samples`: the rep's recorded calls / samples of the product, and on the rows after the last
  prescription week the rep's plan: known-future covariates (a week with no call row has 0 calls);
- `specialty`: the HCP's specialty, a static categorical.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from fulqrun_ml.errors import DataContractError

SERIES_COLUMNS = ("territory", "hcp", "week", "trx", "nrx", "calls", "samples", "specialty")


def pharma_series_frame(
    tables: Mapping[str, pd.DataFrame], product_id: str, truth: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The long table of one product (SERIES_COLUMNS), sorted by territory, HCP and week, and, when the
    simulator's `truth` (row-aligned with `tables["prescriptions"]`) is given, the expected TRx / NRx of each
    output row (NaN on plan rows) for the noise floor."""
    rx = tables["prescriptions"]
    keep = (rx["product_id"] == product_id).to_numpy()
    if not keep.any():
        raise DataContractError(f"prescriptions: no rows for product_id {product_id}")
    cols = ["hcp_id", "week", "trx", "nrx"]
    observed = rx.loc[keep, cols].reset_index(drop=True)
    if truth is not None:
        observed = observed.assign(
            expected_trx=truth["expected_trx"].to_numpy()[keep], expected_nrx=truth["expected_nrx"].to_numpy()[keep]
        )
    calls = tables["hcp_calls"]
    calls = calls.loc[calls["product_id"] == product_id, ["hcp_id", "week", "calls", "samples"]]
    last_week = observed["week"].max()
    # observed weeks get the recorded calls (0 where none); weeks after the last prescription are the plan
    frame = observed.merge(calls, on=["hcp_id", "week"], how="left")
    plan = calls[(calls["week"] > last_week) & calls["hcp_id"].isin(observed["hcp_id"].unique())]
    frame = pd.concat([frame, plan], ignore_index=True)
    frame[["calls", "samples"]] = frame[["calls", "samples"]].fillna(0).astype(np.int64)
    hcps = tables["hcps"].set_index("id")
    names = tables["territories"].set_index("id")["name"]
    frame["territory"] = names.reindex(hcps["territory_id"].reindex(frame["hcp_id"]).to_numpy()).to_numpy()
    frame["specialty"] = hcps["specialty"].reindex(frame["hcp_id"]).to_numpy()
    frame = frame.rename(columns={"hcp_id": "hcp"})
    frame["week"] = pd.to_datetime(frame["week"], utc=True).dt.strftime("%Y-%m-%d")
    frame = frame.sort_values(["territory", "hcp", "week"], kind="stable").reset_index(drop=True)
    expected = frame[["expected_trx", "expected_nrx"]] if truth is not None else None
    return frame[list(SERIES_COLUMNS)], expected
