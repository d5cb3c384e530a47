"""MLP with numeric embeddings (Gorishniy et al. 2022): each numeric feature -> a vector, then the plain MLP.

`numeric_embedding="periodic"` (the default) is PLR: periodic -> linear -> ReLU; `"piecewise_linear"` is PLE on
fixed uniform bins over the standardised range, then linear -> ReLU. The embedded numerics are flattened and
fed, with the categorical embeddings, to `MLP`, so the two backbones differ only in how numbers enter.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.models.embeddings import numeric_embeddings
from fulqrun_ml.models.mlp import MLP


class MLPPLR(nn.Module):
    FAMILY: ClassVar[str] = "tabular"
    MULTI_OUTPUT: ClassVar[bool] = True

    def __init__(
        self,
        n_continuous: int,
        cardinalities: list[int],
        numeric_embedding: str = "periodic",
        d_embedding: int = 8,
        n_frequencies: int = 16,
        frequency_init_scale: float = 0.01,
        n_bins: int = 16,
        bin_range: float = 3.0,
        hidden_dims: tuple[int, ...] = (128, 64),
        dropout: float = 0.3,
        embedding_max_dim: int = 16,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        self.numeric = numeric_embeddings(
            numeric_embedding, n_continuous, d_embedding, n_frequencies, frequency_init_scale, n_bins, bin_range
        )
        self.mlp = MLP(
            n_continuous * d_embedding, list(cardinalities), tuple(hidden_dims), dropout, embedding_max_dim, n_outputs
        )

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Returns logits of shape [N, n_outputs]."""
        return self.mlp(continuous=self.numeric(continuous).flatten(1), categorical=categorical)
