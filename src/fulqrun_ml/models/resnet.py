"""ResNet for tabular data (Gorishniy et al., "Revisiting Deep Learning Models for Tabular Data", NeurIPS 2021).

The paper's strong, simple baseline: a linear layer to width d, then residual blocks

    x + Dropout(Linear(Dropout(ReLU(Linear(BatchNorm(x))))))

(inner width d * d_hidden_factor; `hidden_dropout` after the activation, `residual_dropout` on the branch), then
the prediction head BatchNorm -> ReLU -> Linear (the shared `Head`). The identity path lets depth help without
the optimisation trouble of a deep plain MLP, which is why the paper finds it close to FT-Transformer at a
fraction of its cost. Categorical columns enter through the same embedding tables as the MLP's.

BatchNorm normalises with batch statistics while training, so a training batch needs at least two rows; in
eval mode (holdout, export) it uses its running statistics and the ONNX graph is a plain BatchNormalization.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.models.embeddings import CategoricalEmbeddings, ModelConfigError
from fulqrun_ml.models.heads import Head


class ResidualBlock(nn.Module):
    """x + Dropout(Linear(Dropout(ReLU(Linear(BatchNorm(x)))))): [N, d] -> [N, d]."""

    def __init__(self, d: int, d_hidden: int, hidden_dropout: float, residual_dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(d)
        self.linear_in = nn.Linear(d, d_hidden)
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        self.linear_out = nn.Linear(d_hidden, d)
        self.residual_dropout = nn.Dropout(residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.hidden_dropout(torch.relu(self.linear_in(self.norm(x))))
        return x + self.residual_dropout(self.linear_out(z))


class ResNet(nn.Module):
    FAMILY: ClassVar[str] = "tabular"
    MULTI_OUTPUT: ClassVar[bool] = True

    def __init__(
        self,
        n_continuous: int,
        cardinalities: list[int],
        d: int = 128,
        d_hidden_factor: float = 2.0,
        n_blocks: int = 2,
        hidden_dropout: float = 0.2,
        residual_dropout: float = 0.0,
        embedding_max_dim: int = 16,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        if d < 1:
            raise ModelConfigError("d", f"the block width must be >= 1, got {d}")
        if n_blocks < 1:
            raise ModelConfigError("n_blocks", f"must be >= 1, got {n_blocks}")
        d_hidden = round(d * d_hidden_factor)
        if d_hidden < 1:
            raise ModelConfigError("d_hidden_factor", f"gives an inner width of {d_hidden}; it must be >= 1")
        self.embeddings = CategoricalEmbeddings(list(cardinalities), embedding_max_dim)
        self.first = nn.Linear(n_continuous + self.embeddings.output_dim, d)
        self.blocks = nn.Sequential(
            *(ResidualBlock(d, d_hidden, hidden_dropout, residual_dropout) for _ in range(n_blocks))
        )
        self.head = Head(d, n_outputs, norm="batchnorm", activation="relu")

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Returns logits of shape [N, n_outputs]."""
        x = torch.cat([continuous, self.embeddings(categorical)], dim=1)
        return self.head(self.blocks(self.first(x)))
