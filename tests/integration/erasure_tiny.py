"""A five-row CRM export naming one company, its contact and its deal (and one other company's deal), for the
erasure tests of stores that need no simulated CRM: W&B runs (its ids are the ones the W&B fixture run logged,
erasure_wandb_run/generate.py) and sealed snapshots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COMPANY, OTHER_COMPANY = "6f1c2a9e-0d4b-4c1e-9a57-3e2b8f0c1d11", "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c66"
DEAL, OTHER_DEAL = "0b7e4f2a-93c1-4d8e-b6a2-5c9d1e3f7a21", "a3d5c7e9-1b2d-4f6a-8c0e-2d4f6a8c0e13"
EMAIL, NAME, ORG = "ivan.moreau@northwind-example.com", "Northwind Traders", "4a1d3c5e-7f9b-4d2c-8e6a-0b1c2d3e4f55"
SECRETS = (COMPANY, DEAL, EMAIL, NAME, "Ivan Moreau")


def write_tiny_crm(root: Path) -> Path:
    """`root/crm` with companies, contacts and opportunities (absent tables read as empty); also `root/empty`."""
    crm = root / "crm"
    crm.mkdir(parents=True)
    pd.DataFrame(
        {"id": [COMPANY, OTHER_COMPANY], "name": [NAME, "Contoso Ltd"], "organization_id": [ORG, ORG]}
    ).to_parquet(crm / "companies.parquet")
    pd.DataFrame(
        {"id": ["5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b11"], "company_id": [COMPANY], "email": [EMAIL]}
    ).to_parquet(crm / "contacts.parquet")
    pd.DataFrame(
        {"id": [DEAL, OTHER_DEAL], "company_id": [COMPANY, OTHER_COMPANY], "organization_id": [ORG, ORG]}
    ).to_parquet(crm / "opportunities.parquet")
    (root / "empty").mkdir()
    return crm


def store_args(root: Path) -> list[str]:
    """The tiny CRM and the run directories under `root/runs`; empty directories stand in for the defaults."""
    return [
        "--crm", str(root / "crm"), "--snapshots", str(root / "runs"),
        "--prediction-logs", str(root / "empty"), "--embedding-cache", str(root / "empty"),
    ]  # fmt: skip
