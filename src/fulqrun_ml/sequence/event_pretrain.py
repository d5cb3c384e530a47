"""CoLES pretraining on a user's own event table: the encoder `task=events` fine-tunes, trained without labels.

    fulqrun-ml pretrain task=events data.events_path=E.csv data.labels_path=L.csv data.entity_col=customer_id \
        data.time_col=ts data.target=churned data.as_of_col=as_of [--name N] [--epochs E]
    fulqrun-ml train task=events ... task.sequence.init_from=N@latest [task.sequence.freeze=true]

Why: a user's label table is often small (a churn label exists only once a customer has been watched long enough),
while every entity's event history is there to learn from. The recipe is the deal-touch one
(`sequence/pretrain.py`: two random contiguous slices of one entity's history embed close, NT-Xent over the
batch); only the encoder differs, and it is `models/event_fusion.EventSequenceEncoder`, the very class
`EventFusion` builds, so the pretrained state dict loads into a fine-tune's `net.sequence` key for key.

Point in time: the histories are the datamodule's own training rows, each already cut at its label's as_of
(`event_features.cut_histories`, audited), one per entity (its newest training row). Slices are drawn inside that
cut, so no event after an entity's training as_of, and no validation or test row's history (entity split: other
entities; time split: later dates, behind the embargo), reaches the encoder. The vocabularies and the numeric
scaling are the run's `EventEncoder`, fitted on the same training histories, so a fine-tune on the same files
sees the same token indices and scales (other files: tokens are remapped by value in `load_pretrained_encoder`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from fulqrun_ml.models.event_fusion import EventSequenceEncoder
from fulqrun_ml.sequence.event_datamodule import EventTableDataModule
from fulqrun_ml.sequence.event_features import PADDING_AGE
from fulqrun_ml.sequence.pretrain import PretrainConfig, PretrainError, data_hash, pretrain_encoder

ENCODER_ARGUMENTS = ("d_model", "n_layers", "n_heads", "ffn_factor")


def event_pretraining_arrays(
    datamodule: EventTableDataModule, min_events: int = 4
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The sequence arrays of each training entity's newest training row (histories cut at that as_of), entities
    with fewer than `min_events` events dropped; and the (entity, as_of) each history was cut at."""
    if datamodule.encoder is None:
        raise PretrainError("the event datamodule is not set up (call setup('fit') first)")
    train = datamodule.frames["train"][["entity", "as_of"]].reset_index(drop=True)
    newest = train.sort_values(["entity", "as_of"], kind="stable").groupby("entity", sort=False).tail(1).index
    rows = np.sort(newest.to_numpy())
    sequences = datamodule.sequences["train"]
    arrays = {f: sequences[f][rows] for f in datamodule.encoder.sequence_fields}
    keep = event_lengths(arrays) >= min_events
    if keep.sum() < 2:
        raise PretrainError(
            f"{datamodule.events_path.name}: pretraining needs >= 2 training entities with >= {min_events} events "
            f"at or before their as_of, found {int(keep.sum())}"
        )
    return {k: v[keep] for k, v in arrays.items()}, train.iloc[rows[keep]].reset_index(drop=True)


def event_lengths(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Real events per row: padding columns carry age_days = PADDING_AGE (event tables may have no token field)."""
    return (arrays["age_days"] != PADDING_AGE).sum(axis=1)


def event_encoder_config(datamodule: EventTableDataModule, net: dict[str, Any]) -> dict[str, Any]:
    """`EventSequenceEncoder` arguments: the data's fields and sizes, the model config's shape (`model.net`)."""
    encoder = datamodule.encoder
    return {
        "token_sizes": encoder.token_sizes,
        "value_fields": list(encoder.value_fields),
        "max_len": encoder.max_len,
        **{k: net[k] for k in ENCODER_ARGUMENTS},
        "dropout": float(net.get("sequence_dropout", 0.0)),
    }


def pretrain_event_encoder(
    datamodule: EventTableDataModule,
    net: dict[str, Any],
    epochs: int,
    seed: int,
    min_events: int = 4,
    slices: str = "random",
) -> tuple[EventSequenceEncoder, PretrainConfig, list[float], dict[str, Any]]:
    """CoLES on the training entities' cut histories; returns the encoder, its recipe, the loss per epoch and the
    lineage record (data hash, the latest as_of read, how many entities)."""
    arrays, cut_at = event_pretraining_arrays(datamodule, min_events)
    config = PretrainConfig(encoder=event_encoder_config(datamodule, net), epochs=epochs, seed=seed, slices=slices)
    torch.manual_seed(seed)  # the encoder's initialisation follows the recipe's seed, as the deal encoder's does
    encoder = EventSequenceEncoder(**config.encoder)
    model, losses = pretrain_encoder(arrays, config, encoder, event_lengths(arrays), PADDING_AGE)
    lineage = {
        "data_hash": data_hash(arrays),
        "cutoff": str(cut_at["as_of"].max()),
        "entity": datamodule.entity_col,
        "histories": len(cut_at),
        "events_file": datamodule.events_path.name,
        "labels_file": datamodule.labels_path.name,
        "split": datamodule.split_used,
        "cut": "each training entity's newest training as_of",
    }
    return model, config, losses, lineage
