"""Build the forecasting backbone from the constructor config a run records (net_config.json).

Shared by the runner (training) and the exporter (reloading a run), so both build exactly the same module
tree and the saved state_dict always loads.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate

from fulqrun_ml.models.forecaster import ForecastEnsemble


def build_forecaster(net_config: dict[str, Any]) -> torch.nn.Module:
    """The backbone from its full constructor config; `ensemble: k` (k > 1) builds k members averaged by
    `ForecastEnsemble` (how the run saves and the exporter reloads them)."""
    config = dict(net_config)
    k = int(config.pop("ensemble", 1))
    if k == 1:
        return instantiate(config, _convert_="all")
    return ForecastEnsemble([instantiate(config, _convert_="all") for _ in range(k)])
