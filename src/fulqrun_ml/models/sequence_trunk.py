"""The trunk both sequence models share: [CLS] read-out over pre-norm transformer blocks, and gated fusion.

`ActivitySequenceEncoder` (deal and lead touches, models/sequence_fusion.py) and `EventSequenceEncoder` (any
user event table, models/event_fusion.py) differ only in how one event becomes a d_model token (fixed CRM
fields vs whatever columns a table has) and in how padding is marked; everything after that is this module:
learned recency positions (position k counted from the newest event, so extra left padding never shifts a real
event), a learned [CLS] token that is never masked (an entity without events still gets a finite
representation), padding masked out of attention, and a LayerNorm on the [CLS] output. `SequenceFusion` and
`EventFusion` likewise share the fusion: the tabular MLP's hidden layer h, the projected sequence summary s,
fused = h + sigmoid(W [h, s]) * s, through the MLP's own head.

Why one module: the two models were written as twins, and a fix to one (masking, positions, the ONNX-safe
attention) must reach the other. Submodules keep their attribute names (`position`, `cls`, `blocks`, `norm`,
`project`, `gate`), so state dicts, published versions and pretrained encoders load unchanged; each model builds
its own token modules first and the trunk after, so a seed gives the same initialisation as before.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.mlp import MLP

PADDING_INDEX = 0


class SequenceInputError(FulqrunMLError, ValueError):
    """A sequence tensor passed to the model is missing or too long; the message names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"sequence input '{field}': {reason}")
        self.field = field


def check_trunk_config(max_len: int, d_model: int, n_heads: int) -> None:
    """Refuse shapes the trunk cannot take, naming the config key (before any weight is drawn)."""
    if d_model % n_heads:
        raise ModelConfigError("d_model", f"must be divisible by n_heads={n_heads}, got {d_model}")
    if max_len < 1:
        raise ModelConfigError("max_len", f"must be >= 1, got {max_len}")


class SequenceTrunk(nn.Module):
    """Base of both encoders: subclasses build their token modules, then call `build_trunk`; `read` turns
    [N, L, d_model] event tokens and an [N, L] real-event mask into [N, d_model]."""

    def build_trunk(
        self, max_len: int, d_model: int, n_layers: int, n_heads: int, ffn_factor: float, dropout: float
    ) -> None:
        self.max_len = max_len
        bound = 1 / math.sqrt(d_model)
        self.position = nn.Parameter(torch.empty(max_len, d_model).uniform_(-bound, bound))
        self.cls = nn.Parameter(torch.empty(1, 1, d_model).uniform_(-bound, bound))
        ffn = max(1, round(d_model * ffn_factor))
        self.blocks = nn.ModuleList(_PreNormBlock(d_model, n_heads, ffn, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.output_dim = d_model

    def check_length(self, field: str, length: int) -> None:
        if length > self.max_len:
            raise SequenceInputError(field, f"has {length} events per row, more than max_len={self.max_len}")

    def read(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """[CLS] read-out of left-padded tokens (newest last); `real` is False on padding columns."""
        n, length = real.shape
        # Newest event sits at the last column, so the last `length` rows of the table are recency ranks.
        x = tokens + self.position[self.max_len - length :]
        # Which keys each query may attend to: [CLS] and real events, never padding. [N, 1, 1, L + 1].
        keep = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=real.device), real], dim=1)
        x = torch.cat([self.cls.expand(n, -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x, keep[:, None, None, :])
        return self.norm(x[:, 0])


class GatedFusion(nn.Module):
    """Base of both fused models: the tabular MLP (`tabular`, built first by the subclass), then `build_fusion`
    adds the projection of the sequence summary and (fused arms) the gate."""

    tabular: MLP

    def build_fusion(self, d_model: int, width: int, gated: bool = True) -> None:
        self.project = nn.Linear(d_model, width)
        if gated:
            self.gate = nn.Linear(2 * width, width)

    def tabular_hidden(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        mlp = self.tabular
        return mlp.body(torch.cat([continuous, mlp.embeddings(categorical)], dim=1))

    def fuse(self, hidden: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        """Logits [N, 1]: h + sigmoid(W [h, s]) * s through the MLP's head, s the projected summary."""
        summary = self.project(encoded)
        gate = torch.sigmoid(self.gate(torch.cat([hidden, summary], dim=1)))
        return self.tabular.head(hidden + gate * summary)


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
