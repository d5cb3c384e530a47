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

import math
from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.mlp import MLP

# Sizes of the default vocabularies (padding 0 + unknown 1 + the contract's 5 activity types / 4 channels),
# used when a caller (e.g. the GPU check) builds the model without fitted vocabularies.
DEFAULT_EVENT_TYPES = 7
DEFAULT_CHANNELS = 6
PADDING_INDEX = 0


class SequenceInputError(FulqrunMLError, ValueError):
    """A sequence tensor passed to the model is missing or too long; the message names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"sequence input '{field}': {reason}")
        self.field = field


class ActivitySequenceEncoder(nn.Module):
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
        if d_model % n_heads:
            raise ModelConfigError("d_model", f"must be divisible by n_heads={n_heads}, got {d_model}")
        if max_len < 1:
            raise ModelConfigError("max_len", f"must be >= 1, got {max_len}")
        for name, size in (("n_event_types", n_event_types), ("n_channels", n_channels)):
            if size < 2:
                raise ModelConfigError(name, f"needs padding + at least one value (>= 2), got {size}")
        self.max_len = max_len
        self.event_type = nn.Embedding(n_event_types, d_model, padding_idx=PADDING_INDEX)
        self.channel = nn.Embedding(n_channels, d_model, padding_idx=PADDING_INDEX)
        self.direction = nn.Embedding(n_directions, d_model, padding_idx=PADDING_INDEX) if n_directions else None
        # Two log-scaled gaps -> d_model; a small MLP rather than raw scalars so that short and long gaps can
        # mean different things (e.g. a reply within a day versus a week of silence).
        self.time = nn.Sequential(nn.Linear(2, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        bound = 1 / math.sqrt(d_model)
        self.position = nn.Parameter(torch.empty(max_len, d_model).uniform_(-bound, bound))
        self.cls = nn.Parameter(torch.empty(1, 1, d_model).uniform_(-bound, bound))
        ffn = max(1, round(d_model * ffn_factor))
        self.blocks = nn.ModuleList(_PreNormBlock(d_model, n_heads, ffn, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.output_dim = d_model

    def forward(
        self,
        event_type: torch.Tensor,
        channel: torch.Tensor,
        delta_days: torch.Tensor,
        age_days: torch.Tensor,
        direction: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token tensors are int64 [N, L] (0 = padding), times float [N, L] in days; L <= max_len."""
        length = event_type.shape[1]
        if length > self.max_len:
            raise SequenceInputError("event_type", f"has {length} events per row, more than max_len={self.max_len}")
        gaps = torch.stack([delta_days, age_days], dim=-1).clamp(min=0.0)
        tokens = self.event_type(event_type) + self.channel(channel) + self.time(torch.log1p(gaps))
        if self.direction is not None and direction is not None:
            tokens = tokens + self.direction(direction)
        # Newest event sits at the last column, so the last `length` rows of the table are recency ranks.
        tokens = tokens + self.position[self.max_len - length :]
        cls = self.cls.expand(event_type.shape[0], -1, -1)
        # Which keys each query may attend to: [CLS] and real events, never padding. [N, 1, 1, L + 1].
        cls_keep = torch.ones(event_type.shape[0], 1, dtype=torch.bool, device=event_type.device)
        keep = torch.cat([cls_keep, event_type != PADDING_INDEX], dim=1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x, keep[:, None, None, :])
        return self.norm(x[:, 0])


class _PreNormBlock(nn.Module):
    """Pre-norm transformer block on scaled_dot_product_attention with a key mask.

    Hand-written instead of nn.TransformerEncoderLayer because that layer switches to a fused "fast path" in
    inference mode whose padding-mask handling rejects our [CLS]-prefixed mask and differs from training;
    this block runs the same ops in training, inference and the exported ONNX graph."""

    def __init__(self, d_model: int, n_heads: int, d_ffn: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ffn, d_model))
        # No dropout on the attention weights: on CPU sampling a [N, heads, L, L] mask cost more than the
        # attention itself, and residual + FFN dropout regularise a model this small enough.
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.n_heads, d // self.n_heads).unbind(2)
        attended = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=keep,
        )
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(n, length, d)))
        return x + self.dropout(self.ffn(self.norm2(x)))


class SequenceFusion(nn.Module):
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
            width = hidden_dims[-1]
            self.project = nn.Linear(d_model, width)
            self.gate = nn.Linear(2 * width, width)

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
        mlp = self.tabular
        hidden = mlp.body(torch.cat([continuous, mlp.embeddings(categorical)], dim=1))
        if self.sequence is None:
            return mlp.head(hidden)
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
        summary = self.project(encoded)
        gate = torch.sigmoid(self.gate(torch.cat([hidden, summary], dim=1)))
        return mlp.head(hidden + gate * summary)
