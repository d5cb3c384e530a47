"""The output layer every tabular backbone ends in: optional norm -> optional activation -> linear to n_outputs.

Why one module: the last layer is where a backbone meets its task. A binary or regression task needs one
output per row, a survival task one hazard logit per time bin (`n_outputs`), and the exporters, warm starts and
the per-member TabM loss all reach for "the head". With every tabular backbone ending in the same `Head`, the
output width is checked in one place and each backbone only chooses the recipe its paper prescribes:
plain linear (MLP), LayerNorm-ReLU-linear (FT-Transformer), BatchNorm-ReLU-linear (ResNet), or one linear per
ensemble member (TabM, `members=k`, on [N, k, d] inputs).

Modules are built in the order norm, activation, linear, so a backbone that used to end in the same layers
draws the same initial weights from the same seed.
"""

from __future__ import annotations

import torch
from torch import nn

from fulqrun_ml.models.embeddings import FeaturewiseLinear, ModelConfigError

NORMS = {"layernorm": nn.LayerNorm, "batchnorm": nn.BatchNorm1d}
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


class Head(nn.Module):
    """[N, d_in] -> [N, n_outputs], or with `members=k` [N, k, d_in] -> [N, k, n_outputs] (one linear each)."""

    def __init__(
        self,
        d_in: int,
        n_outputs: int = 1,
        norm: str | None = None,
        activation: str | None = None,
        members: int | None = None,
    ) -> None:
        super().__init__()
        if n_outputs < 1:
            raise ModelConfigError("n_outputs", f"must be >= 1, got {n_outputs}")
        if norm is not None and norm not in NORMS:
            raise ModelConfigError("norm", f"must be one of {sorted(NORMS)} or None, got {norm!r}")
        if activation is not None and activation not in ACTIVATIONS:
            raise ModelConfigError("activation", f"must be one of {sorted(ACTIVATIONS)} or None, got {activation!r}")
        if members is not None and norm == "batchnorm":
            # BatchNorm1d on [N, k, d] would treat the k members as channels and mix their statistics.
            raise ModelConfigError("norm", "a per-member head normalises with layernorm or not at all")
        self.n_outputs = n_outputs
        self.norm: nn.Module = NORMS[norm](d_in) if norm else nn.Identity()
        self.activation: nn.Module = ACTIVATIONS[activation]() if activation else nn.Identity()
        self.linear: nn.Module = (
            FeaturewiseLinear(members, d_in, n_outputs) if members is not None else nn.Linear(d_in, n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.activation(self.norm(x)))
