"""Activity-sequence encoder fused with the tabular MLP: one deal-win logit from features + its touch history.

Why a sequence branch: the tabular features summarise a deal's activities as counts and recencies; the order,
spacing and type-by-time pattern of the touches is lost in those aggregates. The branch reads the last
`max_len` touches before as_of (left-padded, the newest last) and gives the tabular representation a gated
residual: fused = h + sigmoid(W [h, s]) * s. With `use_sequence=False` the branch is not built and the forward
is exactly `MLP.forward` (same modules, built first, so the same seed gives the same tabular initialisation):
the honest tabular-only ablation.

Per event token: embeddings of type, channel and (when the data has it) direction, plus a small MLP of
log1p(days since the previous touch) and log1p(days before as_of), plus a learned recency-position
embedding (position k counted from the newest touch, so extra left padding never shifts a real event).
A learned [CLS] token is prepended and read out; it is never masked, so a deal with no touches yet (all
padding) still gets a finite representation. Index 0 of every token vocabulary is padding (masked out of
attention); unknown values use their own index (1), never 0.

A plain nn.Module (torch only): it trains, exports and is timed (scripts/gpu_check.py) without Hydra or data.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.models.sequence_trunk import (
    PADDING_INDEX,
    GatedFusion,
    SequenceInputError,
    SequenceTrunk,
    _PreNormBlock,
    check_trunk_config,
)

# Sizes of the default vocabularies (padding 0 + unknown 1 + the contract's 5 activity types / 4 channels),
# used when a caller (e.g. the GPU check) builds the model without fitted vocabularies.
DEFAULT_EVENT_TYPES = 7
DEFAULT_CHANNELS = 6
__all__ = ["PADDING_INDEX", "ActivitySequenceEncoder", "SequenceFusion", "SequenceInputError", "_PreNormBlock"]


class ActivitySequenceEncoder(SequenceTrunk):
    """[N, L] event tokens + [N, L] time gaps -> [N, d_model], invariant to (left) padding."""

    def __init__(
        self,
        n_event_types: int = DEFAULT_EVENT_TYPES,
        n_channels: int = DEFAULT_CHANNELS,
        n_directions: int = 0,
        max_len: int = 64,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn_factor: float = 2.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_trunk_config(max_len, d_model, n_heads)
        for name, size in (("n_event_types", n_event_types), ("n_channels", n_channels)):
            if size < 2:
                raise ModelConfigError(name, f"needs padding + at least one value (>= 2), got {size}")
        self.event_type = nn.Embedding(n_event_types, d_model, padding_idx=PADDING_INDEX)
        self.channel = nn.Embedding(n_channels, d_model, padding_idx=PADDING_INDEX)
        self.direction = nn.Embedding(n_directions, d_model, padding_idx=PADDING_INDEX) if n_directions else None
        # Two log-scaled gaps -> d_model; a small MLP rather than raw scalars so that short and long gaps can
        # mean different things (e.g. a reply within a day versus a week of silence).
        self.time = nn.Sequential(nn.Linear(2, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.build_trunk(max_len, d_model, n_layers, n_heads, ffn_factor, dropout)

    def forward(
        self,
        event_type: torch.Tensor,
        channel: torch.Tensor,
        delta_days: torch.Tensor,
        age_days: torch.Tensor,
        direction: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token tensors are int64 [N, L] (0 = padding), times float [N, L] in days; L <= max_len."""
        self.check_length("event_type", event_type.shape[1])
        gaps = torch.stack([delta_days, age_days], dim=-1).clamp(min=0.0)
        tokens = self.event_type(event_type) + self.channel(channel) + self.time(torch.log1p(gaps))
        if self.direction is not None and direction is not None:
            tokens = tokens + self.direction(direction)
        return self.read(tokens, event_type != PADDING_INDEX)


class SequenceFusion(GatedFusion):
    """Tabular MLP (models/mlp.py) + activity-sequence encoder, gated residual fusion -> one logit per row.

    Called with the batch as keywords: `continuous`, `categorical` and the sequence fields, the names of the
    batch keys and of the exported graph's inputs. The fused representation goes through the tabular MLP's own
    `Head` (models/heads.py), so the fused model and its ablation end in the same layer."""

    FAMILY: ClassVar[str] = "sequence"
    MULTI_OUTPUT: ClassVar[bool] = False

    def __init__(
        self,
        n_continuous: int,
        cardinalities: list[int],
        hidden_dims: tuple[int, ...] = (128, 64),
        dropout: float = 0.3,
        embedding_max_dim: int = 16,
        use_sequence: bool = True,
        n_event_types: int = DEFAULT_EVENT_TYPES,
        n_channels: int = DEFAULT_CHANNELS,
        n_directions: int = 0,
        max_len: int = 64,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn_factor: float = 2.0,
        sequence_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not hidden_dims:
            raise ModelConfigError("hidden_dims", "needs at least one layer (the fused representation's width)")
        # Built first: the tabular-only ablation and the fused model start from the same tabular weights.
        self.tabular = MLP(n_continuous, list(cardinalities), tuple(hidden_dims), dropout, embedding_max_dim)
        self.use_sequence = use_sequence
        self.sequence: ActivitySequenceEncoder | None = None
        if use_sequence:
            self.sequence = ActivitySequenceEncoder(
                n_event_types,
                n_channels,
                n_directions,
                max_len,
                d_model,
                n_layers,
                n_heads,
                ffn_factor,
                sequence_dropout,
            )
            self.build_fusion(d_model, hidden_dims[-1])

    def forward(
        self,
        continuous: torch.Tensor,
        categorical: torch.Tensor,
        event_type: torch.Tensor | None = None,
        channel: torch.Tensor | None = None,
        delta_days: torch.Tensor | None = None,
        age_days: torch.Tensor | None = None,
        direction: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Returns logits [N, 1]. Without sequence tensors a deal is scored as having no touches yet (the
        CRM has recorded none), which lets tabular-only callers score it; the runner always passes them."""
        hidden = self.tabular_hidden(continuous, categorical)
        if self.sequence is None:
            return self.tabular.head(hidden)
        if event_type is None:
            # One padding column: the same as no events (padding never reaches [CLS]), without 0-sized tensors.
            empty = continuous.new_zeros((continuous.shape[0], 1))
            event_type, channel, delta_days, age_days = empty.long(), empty.long(), empty, empty
        for name, value in (("channel", channel), ("delta_days", delta_days), ("age_days", age_days)):
            if value is None:
                raise SequenceInputError(name, "missing: event_type, channel, delta_days and age_days go together")
        encoded = self.sequence(
            event_type=event_type, channel=channel, delta_days=delta_days, age_days=age_days, direction=direction
        )
        return self.fuse(hidden, encoded)
