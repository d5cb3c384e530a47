"""Any event history + its derived aggregates -> one output per row: the `task=events` backbone.

The same design as `sequence_fusion.SequenceFusion` (tabular MLP + transformer over the newest events, gated
residual fusion, [CLS] read-out, recency positions, log-scaled gaps), generalised from the CRM's fixed touch
fields to whatever columns a user's event table has: one embedding per categorical event column
(`token_sizes`, index 0 padding, 1 unknown), one linear projection of the numeric event columns
(`value_fields`, already standardised), plus the gaps `delta_days` and `age_days`. The transformer blocks are
the shared trunk (`sequence_trunk.py`: [CLS], positions, pre-norm blocks, gated fusion), so training, inference
and ONNX run the same ops as the deal model.

`mode` picks the arm: "fusion" (aggregates + sequence), "aggregates" (the MLP alone: the aggregates-only
network) or "sequence" (the encoder alone). The aggregates MLP is built first in every mode, so one seed gives
the fusion arm and the aggregates-only arm the same tabular start, and the difference is the sequence.
Inputs arrive as keywords named like the batch keys and graph inputs: `continuous`, `categorical` and the
sequence fields (`seq_<column>`, `delta_days`, `age_days`).
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
    check_trunk_config,
)

MODES = ("fusion", "aggregates", "sequence")


class EventSequenceEncoder(SequenceTrunk):
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
        check_trunk_config(max_len, d_model, n_heads)
        self.token_fields = list(token_sizes)
        self.value_fields = list(value_fields)
        self.tokens = nn.ModuleDict(
            {f: nn.Embedding(n, d_model, padding_idx=PADDING_INDEX) for f, n in token_sizes.items()}
        )
        # Values and the two log-scaled gaps through one small MLP, so a value can mean different things at
        # different spacings (a big basket after a long silence).
        self.values = nn.Sequential(nn.Linear(len(value_fields) + 2, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.build_trunk(max_len, d_model, n_layers, n_heads, ffn_factor, dropout)

    def forward(self, delta_days: torch.Tensor, age_days: torch.Tensor, **fields: torch.Tensor) -> torch.Tensor:
        missing = [f for f in (*self.token_fields, *self.value_fields) if f not in fields]
        if missing:
            raise SequenceInputError(missing[0], "missing")
        self.check_length("delta_days", delta_days.shape[1])
        gaps = torch.log1p(torch.stack([delta_days, age_days], dim=-1).clamp(min=0.0))
        values = torch.cat([*(fields[f].unsqueeze(-1) for f in self.value_fields), gaps], dim=-1)
        x = self.values(values)
        for f in self.token_fields:
            x = x + self.tokens[f](fields[f])
        # Padding columns carry age_days = -1 (event_features.PADDING_AGE); a real event is never after as_of.
        return self.read(x, age_days >= 0)


class EventFusion(GatedFusion):
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
        self.build_fusion(d_model, hidden_dims[-1], gated=mode == "fusion")

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor, **sequence: torch.Tensor) -> torch.Tensor:
        """Logits (or scaled regression values) [N, 1]."""
        if self.mode == "aggregates":
            return self.tabular.head(self.tabular_hidden(continuous, categorical))
        for name in ("delta_days", "age_days"):
            if name not in sequence:
                raise SequenceInputError(name, "missing: an event model needs the sequence fields")
        encoded = self.sequence(**sequence)
        if self.mode == "sequence":
            return self.tabular.head(torch.relu(self.project(encoded)))
        return self.fuse(self.tabular_hidden(continuous, categorical), encoded)
