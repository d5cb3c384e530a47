"""Any event history + its derived aggregates -> one output per row: the `task=events` backbone.

The same design as `sequence_fusion.SequenceFusion` (tabular MLP + transformer over the newest events, gated
residual fusion, [CLS] read-out, recency positions, log-scaled gaps), generalised from the CRM's fixed touch
fields to whatever columns a user's event table has: one embedding per categorical event column
(`token_sizes`, index 0 padding, 1 unknown), one linear projection of the numeric event columns
(`value_fields`, already standardised), plus the gaps `delta_days` and `age_days`. The transformer blocks are
the project's own (`sequence_fusion._PreNormBlock`), so training, inference and ONNX run the same ops.

`mode` picks the arm: "fusion" (aggregates + sequence), "aggregates" (the MLP alone: the aggregates-only
network) or "sequence" (the encoder alone). The aggregates MLP is built first in every mode, so one seed gives
the fusion arm and the aggregates-only arm the same tabular start, and the difference is the sequence.
Inputs arrive as keywords named like the batch keys and graph inputs: `continuous`, `categorical` and the
sequence fields (`seq_<column>`, `delta_days`, `age_days`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.models.sequence_fusion import PADDING_INDEX, SequenceInputError, _PreNormBlock

MODES = ("fusion", "aggregates", "sequence")


class EventSequenceEncoder(nn.Module):
    """Token fields [N, L] int64 + value fields [N, L] float + gaps [N, L] -> [N, d_model], padding-invariant."""

    def __init__(
        self,
        token_sizes: dict[str, int],
        value_fields: list[str],
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
        self.token_fields = list(token_sizes)
        self.value_fields = list(value_fields)
        self.max_len = max_len
        self.tokens = nn.ModuleDict(
            {f: nn.Embedding(n, d_model, padding_idx=PADDING_INDEX) for f, n in token_sizes.items()}
        )
        # Values and the two log-scaled gaps through one small MLP, so a value can mean different things at
        # different spacings (a big basket after a long silence).
        self.values = nn.Sequential(nn.Linear(len(value_fields) + 2, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        bound = 1 / math.sqrt(d_model)
        self.position = nn.Parameter(torch.empty(max_len, d_model).uniform_(-bound, bound))
        self.cls = nn.Parameter(torch.empty(1, 1, d_model).uniform_(-bound, bound))
        ffn = max(1, round(d_model * ffn_factor))
        self.blocks = nn.ModuleList(_PreNormBlock(d_model, n_heads, ffn, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.output_dim = d_model

    def forward(self, delta_days: torch.Tensor, age_days: torch.Tensor, **fields: torch.Tensor) -> torch.Tensor:
        missing = [f for f in (*self.token_fields, *self.value_fields) if f not in fields]
        if missing:
            raise SequenceInputError(missing[0], "missing")
        n, length = delta_days.shape
        if length > self.max_len:
            raise SequenceInputError("delta_days", f"has {length} events per row, more than max_len={self.max_len}")
        gaps = torch.log1p(torch.stack([delta_days, age_days], dim=-1).clamp(min=0.0))
        values = torch.cat([*(fields[f].unsqueeze(-1) for f in self.value_fields), gaps], dim=-1)
        x = self.values(values)
        for f in self.token_fields:
            x = x + self.tokens[f](fields[f])
        x = x + self.position[self.max_len - length :]
        # Padding columns carry age_days = -1 (event_features.PADDING_AGE); a real event is never after as_of.
        real = age_days >= 0
        keep = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=delta_days.device), real], dim=1)
        x = torch.cat([self.cls.expand(n, -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x, keep[:, None, None, :])
        return self.norm(x[:, 0])


class EventFusion(nn.Module):
    """Aggregates MLP + event-sequence encoder with gated residual fusion, or either alone (`mode`)."""

    FAMILY: ClassVar[str] = "sequence"
    MULTI_OUTPUT: ClassVar[bool] = False

    def __init__(
        self,
        n_continuous: int,
        cardinalities: list[int],
        token_sizes: dict[str, int],
        value_fields: list[str],
        mode: str = "fusion",
        hidden_dims: tuple[int, ...] = (128, 64),
        dropout: float = 0.3,
        embedding_max_dim: int = 16,
        max_len: int = 64,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn_factor: float = 2.0,
        sequence_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ModelConfigError("mode", f"must be one of {MODES}, got {mode!r}")
        if not hidden_dims:
            raise ModelConfigError("hidden_dims", "needs at least one layer (the fused representation's width)")
        self.mode = mode
        self.tabular = MLP(n_continuous, list(cardinalities), tuple(hidden_dims), dropout, embedding_max_dim)
        if mode == "aggregates":
            return
        self.sequence = EventSequenceEncoder(
            dict(token_sizes), list(value_fields), max_len, d_model, n_layers, n_heads, ffn_factor, sequence_dropout
        )
        width = hidden_dims[-1]
        self.project = nn.Linear(d_model, width)
        if mode == "fusion":
            self.gate = nn.Linear(2 * width, width)

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor, **sequence: torch.Tensor) -> torch.Tensor:
        """Logits (or scaled regression values) [N, 1]."""
        mlp = self.tabular
        if self.mode == "aggregates":
            return mlp.head(mlp.body(torch.cat([continuous, mlp.embeddings(categorical)], dim=1)))
        for name in ("delta_days", "age_days"):
            if name not in sequence:
                raise SequenceInputError(name, "missing: an event model needs the sequence fields")
        summary = self.project(self.sequence(**sequence))
        if self.mode == "sequence":
            return mlp.head(torch.relu(summary))
        hidden = mlp.body(torch.cat([continuous, mlp.embeddings(categorical)], dim=1))
        gate = torch.sigmoid(self.gate(torch.cat([hidden, summary], dim=1)))
        return mlp.head(hidden + gate * summary)
