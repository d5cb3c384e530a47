"""Embeddings shared by tabular backbones: categorical tables and numeric (periodic, piecewise-linear) encoders.

Numeric embeddings follow Gorishniy et al., "On Embeddings for Numerical Features in Tabular Deep Learning"
(NeurIPS 2022). They turn each scalar into a vector so an MLP can fit sharp, non-monotone shapes of a single
feature that a plain linear first layer smooths away. Everything here is written with ops the ONNX dynamo
exporter maps one to one (Gather, MatMul, Sin/Cos, Clip), so backbones built on them export with parity.
"""

from __future__ import annotations

import math
from itertools import accumulate

import torch
from torch import nn

from fulqrun_ml.errors import FulqrunMLError


class ModelConfigError(FulqrunMLError, ValueError):
    """A backbone was configured with an impossible hyperparameter; the message names it."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"model parameter '{parameter}': {reason}")
        self.parameter = parameter


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


class CategoricalTokens(nn.Module):
    """Every categorical column as one d-dimensional token: [N, n_cat] -> [N, n_cat, d].

    All columns share one table with per-column offsets (one Gather in the graph instead of n_cat), plus a
    per-column bias as in FT-Transformer's feature tokenizer. Index 0 of each column is its 'unknown' row.
    """

    def __init__(self, cardinalities: list[int], d_token: int) -> None:
        super().__init__()
        cardinalities = list(cardinalities)
        offsets = [0, *accumulate(cardinalities)][: len(cardinalities)]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long))
        self.table = nn.Embedding(max(sum(cardinalities), 1), d_token)
        self.bias = nn.Parameter(torch.empty(len(cardinalities), d_token))
        self.n_features = len(cardinalities)
        bound = 1 / math.sqrt(d_token)
        nn.init.uniform_(self.table.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, categorical: torch.Tensor) -> torch.Tensor:
        return self.table(categorical + self.offsets) + self.bias


class NumericTokens(nn.Module):
    """Each numeric feature as x_j * w_j + b_j: [N, n_num] -> [N, n_num, d] (FT-Transformer's tokenizer)."""

    def __init__(self, n_features: int, d_token: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_token)
        self.weight = nn.Parameter(torch.empty(n_features, d_token).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, d_token).uniform_(-bound, bound))

    def forward(self, continuous: torch.Tensor) -> torch.Tensor:
        return continuous.unsqueeze(-1) * self.weight + self.bias


class FeaturewiseLinear(nn.Module):
    """A separate Linear(d_in, d_out) per feature: [N, F, d_in] -> [N, F, d_out], one batched MatMul."""

    def __init__(self, n_features: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n_features, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [F, N, d_in] @ [F, d_in, d_out] -> [F, N, d_out]; transposes keep it a plain MatMul in ONNX.
        return torch.matmul(x.transpose(0, 1), self.weight).transpose(0, 1) + self.bias


class PeriodicEmbeddings(nn.Module):
    """PLR: periodic -> linear -> ReLU, per feature: [N, F] -> [N, F, d_embedding].

    v = [cos(2π c x), sin(2π c x)] with trainable frequencies c ~ N(0, σ²) per feature. σ sets how wiggly the
    learned per-feature functions may start: small σ ≈ smooth, large σ ≈ high-frequency. On small, noisy
    tabular data a small σ generalises better, hence the default.
    """

    def __init__(
        self,
        n_features: int,
        d_embedding: int = 24,
        n_frequencies: int = 32,
        frequency_init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        if frequency_init_scale <= 0:
            raise ModelConfigError("frequency_init_scale", f"must be > 0, got {frequency_init_scale}")
        self.frequencies = nn.Parameter(torch.randn(n_features, n_frequencies) * frequency_init_scale)
        self.linear = FeaturewiseLinear(n_features, 2 * n_frequencies, d_embedding)
        self.output_dim = d_embedding

    def forward(self, continuous: torch.Tensor) -> torch.Tensor:
        v = 2 * math.pi * self.frequencies * continuous.unsqueeze(-1)
        return torch.relu(self.linear(torch.cat([torch.cos(v), torch.sin(v)], dim=-1)))


class PiecewiseLinearEmbeddings(nn.Module):
    """Piecewise-linear encoding (PLE) on fixed uniform bins, then linear -> ReLU: [N, F] -> [N, F, d].

    The FeatureSpec standardises every numeric input, so uniform bins over [-bin_range, bin_range] cover the
    bulk of every feature without storing per-feature quantiles in the model version. Encoding of bin t with
    edges [a_t, b_t]: clip((x - a_t) / (b_t - a_t), 0, 1); the first bin may go below 0 and the last above 1,
    so values outside the range still move the output (linear extrapolation) instead of saturating.
    """

    def __init__(self, n_features: int, d_embedding: int = 24, n_bins: int = 16, bin_range: float = 3.0) -> None:
        super().__init__()
        if n_bins < 2:
            raise ModelConfigError("n_bins", f"must be >= 2, got {n_bins}")
        if bin_range <= 0:
            raise ModelConfigError("bin_range", f"must be > 0, got {bin_range}")
        edges = torch.linspace(-bin_range, bin_range, n_bins + 1)
        self.register_buffer("left", edges[:-1].clone())
        self.register_buffer("width", (edges[1:] - edges[:-1]).clone())
        # Lower / upper clip bounds per bin: open below for the first bin and above for the last.
        low = torch.zeros(n_bins)
        high = torch.ones(n_bins)
        low[0] = -1e6
        high[-1] = 1e6
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.linear = FeaturewiseLinear(n_features, n_bins, d_embedding)
        self.output_dim = d_embedding

    def encode(self, continuous: torch.Tensor) -> torch.Tensor:
        """The piecewise-linear code itself, [N, F] -> [N, F, n_bins], before the learned projection."""
        ratio = (continuous.unsqueeze(-1) - self.left) / self.width
        return torch.minimum(torch.maximum(ratio, self.low), self.high)

    def forward(self, continuous: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(self.encode(continuous)))


NUMERIC_EMBEDDINGS = ("periodic", "piecewise_linear")


def numeric_embeddings(
    kind: str,
    n_features: int,
    d_embedding: int,
    n_frequencies: int = 32,
    frequency_init_scale: float = 0.01,
    n_bins: int = 16,
    bin_range: float = 3.0,
) -> PeriodicEmbeddings | PiecewiseLinearEmbeddings:
    """The numeric embedding named in a config (`periodic` or `piecewise_linear`)."""
    if kind == "periodic":
        return PeriodicEmbeddings(n_features, d_embedding, n_frequencies, frequency_init_scale)
    if kind == "piecewise_linear":
        return PiecewiseLinearEmbeddings(n_features, d_embedding, n_bins, bin_range)
    raise ModelConfigError("numeric_embedding", f"must be one of {NUMERIC_EMBEDDINGS}, got {kind!r}")
