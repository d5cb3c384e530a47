"""MLP backbone for tabular features: embeddings + continuous -> hidden layers -> one logit per row.

A plain nn.Module: no Lightning, no export code, so it trains, exports and tests on its own. Called with the
batch as keywords, `net(continuous=..., categorical=...)`: those names are the batch keys and the ONNX inputs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.models.embeddings import CategoricalEmbeddings
from fulqrun_ml.models.heads import Head


class MLP(nn.Module):
    FAMILY: ClassVar[str] = "tabular"
    MULTI_OUTPUT: ClassVar[bool] = True

    def __init__(
        self,
        n_continuous: int,
        cardinalities: list[int],
        hidden_dims: tuple[int, ...] = (128, 64),
        dropout: float = 0.1,
        embedding_max_dim: int = 16,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        self.embeddings = CategoricalEmbeddings(list(cardinalities), embedding_max_dim)
        layers: list[nn.Module] = []
        width = n_continuous + self.embeddings.output_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        # Each hidden layer already ends in norm + activation, so the head is the plain linear layer.
        self.head = Head(width, n_outputs)

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Returns logits of shape [N, n_outputs]."""
        x = torch.cat([continuous, self.embeddings(categorical)], dim=1)
        return self.head(self.body(x))
