"""A global multi-horizon quantile forecaster in the N-BEATS / N-HiTS family, plus its conformal wrapper.

Why this shape:
- **Global, scale-free**: each window is divided by the mean absolute value of its lookback, so an
  organization booking millions and a rep booking thousands share one set of weights (the usual recipe of
  DeepAR / N-BEATS for panels of different size). The log of that scale is also an input, because noise
  relative to the level differs between a whole org and a single rep.
- **N-HiTS-style blocks**: each block sees the lookback residual max-pooled at its own rate (coarse blocks
  model the level and slow swings, fine blocks the spikes), subtracts its backcast and adds its forecast.
- **Calendar covariates of the forecast periods** (period-of-year sin/cos, quarter-end flag, position in the
  quarter) and a **series embedding** enter every block: CRM bookings are dominated by the quarter-end push,
  which a lookback-only N-BEATS can only infer from the phase of the history.
- **Monotone quantiles by construction**: a centre plus cumulative softplus increments up and down, so no
  quantile crossing is possible and no sorting is needed at serving time.

`ConformalForecaster` wraps a trained net with per-horizon conformal offsets (CQR, fitted elsewhere on a
calibration period) so that the exported graph returns calibrated intervals without any Python around it.
Plain torch only (see ARCHITECTURE.md): no Lightning, no data or export code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


def window_scale(history: torch.Tensor, min_scale: float = 1.0) -> torch.Tensor:
    """Mean absolute value of each lookback window, [B, 1]; floored so an all-zero history divides safely.

    Shared by the network and the training loss, so the loss is measured in the same units the net sees."""
    return history.abs().mean(dim=1, keepdim=True).clamp_min(min_scale)


class _Block(nn.Module):
    """One N-HiTS block: pooled residual + context -> MLP -> (backcast over the lookback, forecast params)."""

    def __init__(
        self, lookback: int, pool: int, context_dim: int, hidden: int, n_layers: int, dropout: float, n_out: int
    ):
        super().__init__()
        self.pool = nn.MaxPool1d(kernel_size=pool, stride=pool, ceil_mode=True) if pool > 1 else nn.Identity()
        pooled = -(-lookback // pool)
        layers: list[nn.Module] = []
        width = pooled + context_dim
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.backcast = nn.Linear(hidden, lookback)
        self.forecast = nn.Linear(hidden, n_out)

    def forward(self, residual: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pool(residual.unsqueeze(1)).squeeze(1)
        h = self.body(torch.cat([pooled, context], dim=1))
        return self.backcast(h), self.forecast(h)


class NBeatsForecaster(nn.Module):
    """history [B, L] (revenue per period, oldest first), calendar [B, H, C] (covariates of the H forecast
    periods), series [B] (int64 index, 0 = unknown series) -> quantiles [B, H, Q] in revenue units.

    Called with the window batch as keywords (`net(history=..., calendar=..., series=...)`): the batch keys
    and the exported graph's input names."""

    FAMILY: ClassVar[str] = "forecast"
    MULTI_OUTPUT: ClassVar[bool] = False

    def __init__(
        self,
        lookback: int,
        horizon: int,
        quantiles: Sequence[float],
        n_calendar: int,
        n_series: int,
        hidden: int = 128,
        n_layers: int = 2,
        pools: Sequence[int] = (4, 2, 1),
        dropout: float = 0.1,
        embedding_dim: int = 8,
        min_scale: float = 1.0,
    ) -> None:
        super().__init__()
        qs = [float(q) for q in quantiles]
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or qs != sorted(set(qs)):
            raise ValueError(f"quantiles must be strictly increasing values in (0, 1), got {list(quantiles)}")
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback and horizon must be >= 1, got lookback={lookback}, horizon={horizon}")
        self.lookback, self.horizon, self.n_quantiles = lookback, horizon, len(qs)
        self.register_buffer("quantiles", torch.tensor(qs, dtype=torch.float32), persistent=False)
        self.centre = min(range(len(qs)), key=lambda i: abs(qs[i] - 0.5))
        self.min_scale = min_scale
        self.embedding = nn.Embedding(n_series + 1, embedding_dim)  # index 0: a series unseen in training
        context_dim = horizon * n_calendar + embedding_dim + 1
        if not pools:
            raise ValueError("pools must name at least one block")
        self.blocks = nn.ModuleList(
            _Block(lookback, p, context_dim, hidden, n_layers, dropout, horizon * len(qs)) for p in pools
        )

    def forward(self, history: torch.Tensor, calendar: torch.Tensor, series: torch.Tensor) -> torch.Tensor:
        scale = window_scale(history, self.min_scale)
        residual = history / scale
        context = torch.cat(
            [calendar.flatten(1), self.embedding(series), torch.log1p(scale) / 10.0],  # /10: log revenue ~ 5-15
            dim=1,
        )
        raw: torch.Tensor | float = 0.0
        for block in self.blocks:
            backcast, forecast = block(residual, context)
            residual = residual - backcast
            raw = raw + forecast
        assert isinstance(raw, torch.Tensor)  # at least one block (pools is non-empty)
        return self._monotone(raw.view(-1, self.horizon, self.n_quantiles)) * scale.unsqueeze(-1)

    def _monotone(self, raw: torch.Tensor) -> torch.Tensor:
        """Centre quantile, then cumulative positive steps outward: q_1 <= ... <= q_Q always holds."""
        c = self.centre
        centre = raw[..., c : c + 1]
        up = centre + torch.cumsum(F.softplus(raw[..., c + 1 :]), dim=-1)
        down = centre - torch.cumsum(F.softplus(raw[..., :c].flip(-1)), dim=-1).flip(-1)
        return torch.cat([down, centre, up], dim=-1)


class ConformalForecaster(nn.Module):
    """A trained forecaster + conformal offsets, as served: widens (or narrows) each quantile by
    `offsets[series, h, q] * window scale`, restores monotonicity and clamps at zero (booked revenue is never
    negative). Offsets are per series row ([n_series + 1, H, Q], row 0 for unseen series) because
    calibration is per level (an org's and a rep's errors differ); an [H, Q] table applies to all series.
    With all offsets zero it is the raw forecaster clamped at zero."""

    def __init__(self, net: nn.Module, offsets: torch.Tensor, min_scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("offsets", offsets.to(torch.float32).clone())
        self.min_scale = min_scale

    def forward(self, history: torch.Tensor, calendar: torch.Tensor, series: torch.Tensor) -> torch.Tensor:
        q = self.net(history=history, calendar=calendar, series=series)
        offsets = self.offsets[series] if self.offsets.dim() == 3 else self.offsets.unsqueeze(0)
        q = q + offsets * window_scale(history, self.min_scale).unsqueeze(-1)
        # Running max over the (few) quantiles, unrolled: keeps the graph to Max ops every runtime supports.
        columns = [q[..., 0]]
        for k in range(1, q.shape[-1]):
            columns.append(torch.maximum(columns[-1], q[..., k]))
        return torch.relu(torch.stack(columns, dim=-1))


class ForecastEnsemble(nn.Module):
    """Mean of several forecasters' quantiles (N-BEATS' own recipe: an ensemble of independently seeded
    members). A mean of monotone quantile vectors is monotone, so the guarantee carries over; on short
    series (an organization has a few hundred windows) it removes most of the seed-to-seed variance."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        first: Any = members[0]
        self.lookback, self.horizon, self.n_quantiles = first.lookback, first.horizon, first.n_quantiles

    def forward(self, history: torch.Tensor, calendar: torch.Tensor, series: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(history=history, calendar=calendar, series=series) for m in self.members]).mean(dim=0)
