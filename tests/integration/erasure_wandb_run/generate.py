"""Generates the W&B offline run used by tests/integration/test_erasure_wandb.py (real wandb 0.31 writer).

Run from this directory: `../../../.venv/bin/python generate.py`, then move `wandb/offline-run-*` here (the
repository ignores `wandb/` directories) and drop its `logs/debug-core.log` symlink."""

import wandb

COMPANY = "6f1c2a9e-0d4b-4c1e-9a57-3e2b8f0c1d11"
DEAL = "0b7e4f2a-93c1-4d8e-b6a2-5c9d1e3f7a21"
OTHER_DEAL = "a3d5c7e9-1b2d-4f6a-8c0e-2d4f6a8c0e13"
CONTACT_EMAIL = "ivan.moreau@northwind-example.com"
NAME = "Northwind Traders"
run = wandb.init(
    mode="offline",
    dir=".",
    project="erasure-fixture",
    config={"data": {"note": f"pilot account {NAME}", "deal": DEAL}, "lr": 0.01},
    tags=["fixture"],
)
for step in range(3):
    wandb.log({"loss": 1.0 / (step + 1), "worst_deal": DEAL if step == 1 else OTHER_DEAL})
table = wandb.Table(
    columns=["opportunity_id", "company", "probability"], data=[[DEAL, NAME, 0.8], [OTHER_DEAL, "Contoso Ltd", 0.4]]
)
wandb.log({"holdout/predictions": table})
run.summary["champion_contact"] = CONTACT_EMAIL
print(f"slowest deal {DEAL} at {NAME}")
wandb.finish()
