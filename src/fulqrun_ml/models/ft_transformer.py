"""FT-Transformer (Gorishniy et al., "Revisiting Deep Learning Models for Tabular Data", 2021).

Every feature becomes a token (numeric: x·w + b; categorical: an embedding row + bias), a learned [CLS] token
is prepended, a pre-norm transformer encoder lets features attend to each other, and the head reads [CLS].
Attention can model feature interactions an MLP must discover through its first layer; the price is
O(features²) attention per row, which is cheap for the ~20 columns of a CRM snapshot.
`torch.nn.TransformerEncoderLayer` (batch_first, norm_first) is used as is, so the ONNX exporter sees stock ops.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.models.embeddings import CategoricalTokens, ModelConfigError, NumericTokens
from fulqrun_ml.models.heads import Head


class FTTransformer(nn.Module):
    FAMILY: ClassVar[str] = "tabular"
    MULTI_OUTPUT: ClassVar[bool] = True

    def __init__(
        self,
        n_continuous: int,
        cardinalities: list[int],
        d_token: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn_factor: float = 2.0,
        dropout: float = 0.1,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        if d_token % n_heads:
            raise ModelConfigError("d_token", f"must be divisible by n_heads={n_heads}, got {d_token}")
        self.numeric = NumericTokens(n_continuous, d_token)
        self.categorical = CategoricalTokens(list(cardinalities), d_token) if cardinalities else None
        self.cls = nn.Parameter(torch.empty(1, 1, d_token).uniform_(-1 / math.sqrt(d_token), 1 / math.sqrt(d_token)))
        layer = nn.TransformerEncoderLayer(
            d_model=d_token,
            nhead=n_heads,
            dim_feedforward=max(1, round(d_token * ffn_factor)),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors only help with padding masks, which tabular rows never have.
        self.encoder = nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)
        self.head = Head(d_token, n_outputs, norm="layernorm", activation="relu")

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Returns logits of shape [N, n_outputs]."""
        tokens = [self.cls.expand(continuous.shape[0], -1, -1), self.numeric(continuous)]
        if self.categorical is not None:
            tokens.append(self.categorical(categorical))
        encoded = self.encoder(torch.cat(tokens, dim=1))
        return self.head(encoded[:, 0])
