"""Counterfactual data for the sequence study: a timing signal the production simulator does not have.

The default simulator's touches are Poisson given deal quality, so event order and spacing carry nothing a count
does not; the fused model then gains nothing over the tabular one. `with_reply_latency` adds customer replies
whose *latency* depends on deal quality, to check that the sequence branch can read a signal when there is one
(`scripts/bench_sequence.py --counterfactual`). Only the study uses it; the production simulator is unchanged.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.sequence.datamodule import DealWinSequenceDataModule

REPLY_LATENCY_STORY = (
    "The default simulated CRM plus customer replies whose latency depends on deal quality z: each outbound call "
    "or email on a deal gets, with probability 0.4 (independent of z, so reply counts carry nothing), an inbound "
    "email reply after Exponential(mean 2 * exp(-0.8 z)) days, dropped if it would land after the deal's close or "
    "extraction. The production simulator is unchanged."
)


def with_reply_latency(
    loaded: SimulatedCRM, reply_probability: float = 0.4, scale_days: float = 2.0, effect: float = 0.8, seed: int = 0
) -> SimulatedCRM:
    """Counterfactual data: the simulated CRM plus customer replies whose *latency* depends on deal quality.

    Each outbound call or email on a deal gets, with a fixed probability (so reply counts say nothing about
    the deal), an inbound email reply after Exponential(scale_days * exp(-effect * z)) days, dropped if it
    would land after the deal closed or after extraction. Good deals answer fast, poor ones slowly: a signal
    that lives in the spacing of consecutive events, which no count the tabular features hold can carry.
    Used only by `--counterfactual`; the production simulator is unchanged."""
    tables = loaded.tables
    rng = np.random.default_rng(seed)
    acts = tables.activities
    z = loaded.latent.set_index("opportunity_id")["latent_quality"]
    closes = tables.stage_history[tables.stage_history["to_stage"].isin(["closed_won", "closed_lost"])]
    end = closes.set_index("opportunity_id")["changed_at"]
    asks = acts[
        (acts["related_type"] == "opportunity")
        & acts["type"].isin(["call", "email"])
        & (acts["direction"] == "outbound")
    ]
    asks = asks[rng.uniform(size=len(asks)) < reply_probability]
    quality = z.reindex(asks["related_id"]).to_numpy()
    delay = rng.exponential(scale_days * np.exp(-effect * quality))
    replies = asks.assign(
        id=[
            str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4))
            for _ in range(len(asks))
        ],
        type="email",
        subject="email with customer",
        direction="inbound",
        created_at=asks["created_at"] + pd.to_timedelta(delay, unit="D"),
    )
    deadline = end.reindex(replies["related_id"]).fillna(tables.extracted_at).to_numpy()
    replies = replies[(replies["created_at"].to_numpy() <= deadline) & (replies["created_at"] <= tables.extracted_at)]
    replies = replies.assign(due_date=replies["created_at"] + pd.Timedelta(days=2))
    activities = pd.concat([acts, replies], ignore_index=True).sort_values("created_at", kind="stable")
    return dataclasses.replace(loaded, tables=dataclasses.replace(tables, activities=activities.reset_index(drop=True)))


def counterfactual_datamodule(cfg: Any) -> DealWinSequenceDataModule:
    """The configured data with `with_reply_latency` applied to the simulator's output, as the sequence
    datamodule `train(cfg, datamodule=...)` runs on (the pipeline would build it from the unchanged source)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    source = instantiate(OmegaConf.create(data.pop("source")))
    data.pop("_target_")
    return DealWinSequenceDataModule(
        source=lambda: with_reply_latency(source()), max_len=int(cfg.task.sequence.max_len), **data
    )
