"""Self-supervised pretraining of the activity-sequence encoder (CoLES: contrastive learning on sub-sequences).

Why: labelled deals are scarce (a deal is labelled only once it closes), but every deal's touch history is there to
learn from. CoLES (Babaev et al., "CoLES: Contrastive Learning for Event Sequences with Self-Supervision", 2022;
pytorch-lifestream) trains an encoder so that two random contiguous slices of the same entity's history embed close
together and slices of different entities far apart (NT-Xent over the batch). The encoder is then the starting point
of the fused deal-win model (`task.sequence.init_from=<name>@<version>`), fine-tuned or frozen.

Point in time: pretraining reads only touches at or before `cutoff` (the end of the training split), so nothing the
holdout period holds reaches the encoder. The encoder is published as a registry version (atomic `publish_version`)
holding `encoder_state.pt`, `encoder_config.json`, `sequence_vocab.json`, `metrics.json` (the contrastive loss per
epoch) and `lineage.json` (data hash, cutoff, git commit); `load_pretrained_encoder` maps its token embeddings onto
a run's own vocabulary by token value, so a run whose training split saw other values still starts right.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.models.sequence_fusion import ActivitySequenceEncoder
from fulqrun_ml.project import git_commit
from fulqrun_ml.registry.store import ModelVersion, get_version, publish_version
from fulqrun_ml.sequence.events import PADDING, SequenceVocabulary, build_sequences

ENCODER_STATE, ENCODER_CONFIG, VOCAB_FILE = "encoder_state.pt", "encoder_config.json", "sequence_vocab.json"
EMBEDDINGS = ("event_type", "channel", "direction")
SLICES = ("random", "suffix")


class PretrainError(FulqrunMLError, ValueError):
    """Pretraining input or a pretrained version that cannot be used; the message names what is wrong."""


@dataclass(frozen=True)
class PretrainConfig:
    """The CoLES recipe: slice lengths, batch, epochs, temperature; the encoder's shape is `encoder`."""

    encoder: dict[str, Any]
    min_events: int = 4
    min_slice: int = 3
    epochs: int = 8
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 0.1
    seed: int = 0
    # "random": any contiguous slice, re-dated so its newest event is "now" (CoLES as published). "suffix": the
    # newest k events at the history's own as_of, ages kept: for labels that hinge on the state at as_of (days
    # since the last event, a recent drift), which re-dating random slices teaches the encoder to ignore.
    slices: str = "random"

    def __post_init__(self) -> None:
        if self.slices not in SLICES:
            raise PretrainError(f"slices must be one of {SLICES}, got {self.slices!r}")


def pretraining_histories(
    tables: CRMTables, cutoff: pd.Timestamp, max_len: int, min_events: int, entity: str = "opportunity_id"
) -> dict:
    """Raw sequences (`build_sequences` layout) of every deal (entity "lead_id": lead) created before `cutoff`,
    events <= cutoff only, keeping those with at least `min_events` events."""
    parents = tables.leads if entity == "lead_id" else tables.opportunities
    ids = parents.loc[parents["created_at"] <= cutoff, "id"].drop_duplicates()
    raw = build_sequences(tables, pd.DataFrame({entity: ids.to_numpy(), "as_of": cutoff}), max_len, entity)
    keep = raw["length"] >= min_events
    if keep.sum() < 2:
        raise PretrainError(f"pretraining needs >= 2 histories with >= {min_events} events before {cutoff}")
    return {k: v[keep] for k, v in raw.items()}


def random_slices(
    arrays: dict[str, np.ndarray],
    rng: np.random.Generator,
    min_slice: int,
    length: np.ndarray | None = None,
    padding_age: float = 0.0,
    suffix: bool = False,
) -> dict[str, np.ndarray]:
    """One random contiguous slice of each row's real events, left-padded again; its newest event becomes "now"
    (age 0) and its first event's gap 0, so a slice looks like a history cut at an earlier as_of.

    `length` [N] counts each row's real (trailing) events; by default the non-padding `event_type` tokens (deal and
    lead histories). Event tables mark padding by age instead (`padding_age`, -1 there), since they may have no
    token field at all. With `suffix`, each slice is the row's newest k events, left as they are (ages before the
    row's own as_of, the first gap unchanged): a shorter memory of the same moment."""
    first = next(iter(arrays.values()))
    n, max_len = first.shape
    if length is None:
        length = (arrays["event_type"] != PADDING).sum(axis=1)
    length = np.asarray(length, dtype=np.int64)
    size = rng.integers(np.minimum(min_slice, length), length + 1)
    start = max_len - size if suffix else max_len - length + rng.integers(0, length - size + 1)
    out = {k: np.zeros_like(v) for k, v in arrays.items()}
    for row in range(n):
        lo, k = start[row], size[row]
        for name, values in arrays.items():
            out[name][row, max_len - k :] = values[row, lo : lo + k]
    real = np.arange(max_len)[None, :] >= (max_len - size)[:, None]
    if suffix:
        out["age_days"] = np.where(real, out["age_days"], padding_age)
        return {k: v.astype(arrays[k].dtype) for k, v in out.items()}
    out["delta_days"][:, :] = np.where(np.arange(max_len) == max_len - size[:, None], 0.0, out["delta_days"])
    out["age_days"] = np.where(real, out["age_days"] - out["age_days"][:, -1:], padding_age)
    return {k: v.astype(arrays[k].dtype) for k, v in out.items()}


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Contrastive loss: row i of `a` must pick row i of `b` (and vice versa) among the batch's 2N - 1 others."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, target)


def pretrain_encoder(
    arrays: dict[str, np.ndarray],
    config: PretrainConfig,
    encoder: nn.Module | None = None,
    length: np.ndarray | None = None,
    padding_age: float = 0.0,
) -> tuple[nn.Module, list]:
    """Train an encoder (+ a projection head, discarded) with CoLES on model-ready arrays (every key is an encoder
    input); returns it and the mean loss per epoch.

    `encoder` defaults to `ActivitySequenceEncoder(**config.encoder)` (deal and lead touches); an event table
    passes the `EventSequenceEncoder` its `task=events` model fine-tunes, with `length` and `padding_age` as in
    `random_slices`. One loop, one loss, whichever encoder."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    encoder = encoder if encoder is not None else ActivitySequenceEncoder(**config.encoder)
    head = nn.Sequential(
        nn.Linear(encoder.output_dim, encoder.output_dim), nn.ReLU(), nn.Linear(encoder.output_dim, 32)
    )
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=config.lr, weight_decay=0.01)
    fields = list(arrays)
    if length is None:
        length = (arrays["event_type"] != PADDING).sum(axis=1)
    n, losses = len(length), []
    for _ in range(config.epochs):
        encoder.train()
        order, total = rng.permutation(n), 0.0
        batches = [order[i : i + config.batch_size] for i in range(0, n, config.batch_size)]
        batches = [b for b in batches if len(b) > 1]
        for rows in batches:
            views = []
            for _view in range(2):
                sliced = random_slices(
                    {f: arrays[f][rows] for f in fields},
                    rng,
                    config.min_slice,
                    length[rows],
                    padding_age,
                    suffix=config.slices == "suffix",
                )
                views.append(head(encoder(**{f: torch.from_numpy(sliced[f]) for f in fields})))
            loss = nt_xent(views[0], views[1], config.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        losses.append(round(total / max(len(batches), 1), 4))
    return encoder.eval(), losses


def data_hash(arrays: dict[str, np.ndarray]) -> str:
    """Content hash of the pretraining histories, for lineage."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()[:16]


def publish_pretrained_encoder(
    models_dir: Path,
    name: str,
    encoder: ActivitySequenceEncoder,
    config: PretrainConfig,
    vocabulary: Any,
    losses: list[float],
    lineage: dict[str, Any],
) -> ModelVersion:
    """The encoder as a registry version (complete or absent), with its loss curve and lineage; `vocabulary` is a
    `SequenceVocabulary` or an event table's `EventEncoder` (both `save` a `known` mapping)."""

    def write(tmp: Path) -> None:
        torch.save(encoder.state_dict(), tmp / ENCODER_STATE)
        (tmp / ENCODER_CONFIG).write_text(json.dumps(config.encoder, indent=2))
        vocabulary.save(tmp / VOCAB_FILE)
        metrics = {"contrastive_loss_per_epoch": losses, "recipe": {**config.__dict__, "encoder": None}}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        record = {**lineage, "git_commit": git_commit(), "task": "sequence_pretrain", "model": "coles_encoder"}
        (tmp / "lineage.json").write_text(json.dumps(record, indent=2, default=str))

    metadata = {"kind": "pretrained_sequence_encoder", "method": "coles", "data_hash": lineage.get("data_hash")}
    return publish_version(Path(models_dir), name, write, metadata)


def load_pretrained_encoder(models_dir: Path, ref: str, target: Any) -> tuple[dict, dict, dict]:
    """(state dict mapped onto `target`'s token indices, the encoder config, the version's lineage record) for a
    `<name>@<version>` reference. Tokens the encoder never saw keep the run's fresh initialisation (not copied).

    `target` is the run's fitted vocabulary: a `SequenceVocabulary` (deal/lead touches) or an event table's
    `EventEncoder`; both carry `known` (token field -> values) and save it under the same key, so one remap
    serves both encoders."""
    name, sep, version = str(ref).partition("@")
    if not sep or not name or not version:
        raise PretrainError(f"task.sequence.init_from='{ref}': expected <name>@<version>, e.g. coles_deals@latest")
    try:
        chosen = get_version(Path(models_dir), name, version)
    except FulqrunMLError as exc:
        raise PretrainError(f"task.sequence.init_from={ref}: {exc}") from exc
    if not (chosen.path / ENCODER_STATE).is_file():
        raise PretrainError(f"task.sequence.init_from={ref}: version {chosen.version} holds no {ENCODER_STATE}")
    state = torch.load(chosen.path / ENCODER_STATE, weights_only=True)
    config = json.loads((chosen.path / ENCODER_CONFIG).read_text())
    source = SequenceVocabulary.load(chosen.path / VOCAB_FILE)
    keys = {field: _embedding_key(state, field) for field in (*EMBEDDINGS, *source.known)}
    embedded = {key for key in keys.values() if key is not None}
    mapped = {k: v for k, v in state.items() if k not in embedded}
    for field, key in keys.items():
        if key is not None and field in target.known:
            mapped[key] = _remap(state[key], source.known.get(field, ()), target.known[field])
    lineage = {"name": chosen.name, "version": chosen.version, "data_hash": chosen.metadata.get("data_hash")}
    return mapped, config, lineage


def _embedding_key(state: dict[str, torch.Tensor], field: str) -> str | None:
    """The state key of a token field's embedding: `<field>.weight` (ActivitySequenceEncoder) or
    `tokens.<field>.weight` (EventSequenceEncoder); None when the encoder has no such field."""
    for key in (f"{field}.weight", f"tokens.{field}.weight"):
        if key in state:
            return key
    return None


def _remap(weight: torch.Tensor, source: tuple, target: tuple) -> torch.Tensor:
    """Embedding rows re-indexed from the source vocabulary to the target's by token value; rows the source lacks
    are NaN and skipped by `apply_pretrained`."""
    out = torch.full((len(target) + 2, weight.shape[1]), float("nan"))
    out[:2] = weight[:2]  # padding and unknown
    where = {value: i + 2 for i, value in enumerate(source)}
    for j, value in enumerate(target):
        if value in where:
            out[j + 2] = weight[where[value]]
    return out


def apply_pretrained(encoder: nn.Module, state: dict[str, torch.Tensor], freeze: bool) -> None:
    """Copy the pretrained weights into a run's encoder (NaN rows: tokens new to the encoder, left as they are);
    with `freeze`, the encoder's parameters stop training (only the fusion and tabular parts learn)."""
    own = encoder.state_dict()
    for key, value in state.items():
        if key not in own:
            raise PretrainError(f"pretrained encoder has '{key}', this run's encoder does not (model.net differs)")
        if own[key].shape != value.shape:
            raise PretrainError(f"pretrained '{key}' is {list(value.shape)}, this run's is {list(own[key].shape)}")
        known = ~torch.isnan(value) if value.is_floating_point() else torch.ones_like(value, dtype=torch.bool)
        own[key] = torch.where(known, value, own[key])
    encoder.load_state_dict(own)
    if freeze:
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)
