"""A simulated export made dirty on purpose, so validation has real mess to catch (and tests can prove it does)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables


def inject_dirt(tables: CRMTables, rate: float = 0.02, seed: int = 0) -> CRMTables:
    """The mess of a real export, for validation to catch: missing values, duplicate rows, category typos,
    late-arriving updates (updated_at before created_at) and PII (emails, phones) in free text."""
    rng = np.random.default_rng(seed)
    opps = tables.opportunities.copy()
    rows = lambda frame: rng.uniform(size=len(frame)) < rate  # noqa: E731 - a one-line sampler
    opps.loc[rows(opps), "value"] = np.nan
    opps.loc[rows(opps), "stage"] = opps["stage"].str.upper()  # "Proposal" vs "proposal" style typos
    late = rows(opps)
    opps.loc[late, "updated_at"] = opps.loc[late, "created_at"] - pd.Timedelta(days=3)
    opps.loc[rows(opps), "champion"] = "call me at +1-555-0199 or jane.roe@example.com"
    duplicated = opps[rows(opps)]
    acts = tables.activities.copy()
    acts.loc[rows(acts), "type"] = "meetting"
    companies = tables.companies.copy()
    companies.loc[rows(companies), "industry"] = None
    return dataclasses.replace(
        tables,
        opportunities=pd.concat([opps, duplicated], ignore_index=True),
        activities=acts,
        companies=companies,
    )
