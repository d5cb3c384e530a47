"""TabM (Gorishniy et al., "TabM: Advancing Tabular Deep Learning with Parameter-Efficient Ensembling", 2025).

k MLPs that share their weight matrices, BatchEnsemble style: member i computes ((x ⊙ r_i) W) ⊙ s_i + b_i,
so k members cost k rank-1 adapters plus k biases per layer instead of k full MLPs, and all members run in one
batched matmul. The first layer's input adapters start as random ±1 signs (the rest as ones), which is what
makes the members differ from step one. Each member has its own linear head (the shared `Head` with `members=k`).

`forward` returns the mean of the member logits, [N, n_outputs], so any task that calls
`net(continuous=..., categorical=...)` trains and exports it unchanged. The members only become an ensemble of
*independently* fit predictors when each is trained on its own loss: a task should then call `forward_members`
([N, k, n_outputs]) and average the per-member losses (see the model zoo report).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from fulqrun_ml.models.embeddings import CategoricalEmbeddings, ModelConfigError, numeric_embeddings
from fulqrun_ml.models.heads import Head


class LinearBatchEnsemble(nn.Module):
    """One shared Linear(d_in, d_out) seen by k members through rank-1 adapters: [N, k, d_in] -> [N, k, d_out]."""

    def __init__(self, k: int, d_in: int, d_out: int, random_sign_input: bool) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(d_in, d_out).uniform_(-bound, bound))
        r = torch.ones(k, d_in)
        if random_sign_input:
            r = torch.where(torch.rand(k, d_in) < 0.5, -r, r)
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(k, d_out))
        # Same bias initialisation for every member, as a plain Linear would draw it.
        self.bias = nn.Parameter(torch.empty(d_out).uniform_(-bound, bound).expand(k, d_out).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x * self.r, self.weight) * self.s + self.bias


class TabM(nn.Module):
    FAMILY: ClassVar[str] = "tabular"
    MULTI_OUTPUT: ClassVar[bool] = True

    def __init__(
        self,
        n_continuous: int,
        cardinalities: list[int],
        k: int = 32,
        hidden_dims: tuple[int, ...] = (128, 128),
        dropout: float = 0.1,
        embedding_max_dim: int = 16,
        numeric_embedding: str | None = None,
        d_embedding: int = 8,
        n_frequencies: int = 16,
        frequency_init_scale: float = 0.01,
        n_bins: int = 16,
        bin_range: float = 3.0,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ModelConfigError("k", f"the number of ensemble members must be >= 1, got {k}")
        if not hidden_dims:
            raise ModelConfigError("hidden_dims", "TabM needs at least one hidden layer")
        self.k = k
        self.numeric = (
            numeric_embeddings(
                numeric_embedding, n_continuous, d_embedding, n_frequencies, frequency_init_scale, n_bins, bin_range
            )
            if numeric_embedding
            else None
        )
        self.embeddings = CategoricalEmbeddings(list(cardinalities), embedding_max_dim)
        width = (n_continuous * d_embedding if self.numeric else n_continuous) + self.embeddings.output_dim
        layers: list[nn.Module] = []
        for i, hidden in enumerate(hidden_dims):
            layers += [LinearBatchEnsemble(k, width, hidden, random_sign_input=i == 0), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = Head(width, n_outputs, members=k)

    def forward_members(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Every member's logits, [N, k, n_outputs]: for a per-member training loss."""
        numeric = self.numeric(continuous).flatten(1) if self.numeric is not None else continuous
        x = torch.cat([numeric, self.embeddings(categorical)], dim=1)
        return self.head(self.body(x.unsqueeze(1).expand(-1, self.k, -1)))

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """The ensemble's logits, [N, n_outputs]: the mean of the member logits."""
        return self.forward_members(continuous, categorical).mean(dim=1)
