"""Categorical embeddings shared by tabular backbones."""

from __future__ import annotations

import torch
from torch import nn


def embedding_dim(cardinality: int, max_dim: int = 16) -> int:
    """A common rule of thumb: grow with the vocabulary, capped so rare features stay small."""
    return min(max_dim, max(2, round(1.6 * cardinality**0.56)))


class CategoricalEmbeddings(nn.Module):
    """One embedding table per categorical column; index 0 is each column's 'unknown' row."""

    def __init__(self, cardinalities: list[int], max_dim: int = 16) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(c, embedding_dim(c, max_dim)) for c in cardinalities)
        self.output_dim = sum(t.embedding_dim for t in self.tables)

    def forward(self, categorical: torch.Tensor) -> torch.Tensor:
        if not self.tables:
            return categorical.new_zeros((categorical.shape[0], 0), dtype=torch.float32)
        return torch.cat([table(categorical[:, j]) for j, table in enumerate(self.tables)], dim=1)
