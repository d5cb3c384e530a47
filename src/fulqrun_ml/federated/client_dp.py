"""Client-level differential privacy on the aggregated update (DP-FedAvg, McMahan et al. 2018).

The unit protected is a whole organisation: adding or removing one organisation's data changes the released
global model only as much as one clipped update can. How:

- each client clips its weight delta to L2 norm `clip_norm` (C) before it leaves, across all tensors at once.
  The clients do it, not the server, because under secure aggregation the server never sees a single update;
- with DP on, every accepted client weighs 1, not its row count, so one organisation's influence on the sum is
  bounded by C (row-count weights would let a large organisation move the sum by more than C);
- the server adds Gaussian noise N(0, (sigma * C)^2) to each coordinate of the sum, then divides by the number of
  accepted updates. Under secure aggregation it adds the noise to the unmasked sum, the only thing it sees.

Accounting: every round releases one Gaussian mechanism with sensitivity C and noise multiplier sigma over all
clients (no client sampling, so sampling rate 1). Opacus' RDP accountant composes the rounds that released a
noised aggregate into (epsilon, delta). What epsilon does NOT cover: the per-round validation losses and final
metrics the clients report in clear (scalars), the FeatureSpec statistics (means, variances, category counts),
and the row counts. The server is trusted to add the noise; a server that skips it breaks the guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from opacus.accountants import RDPAccountant

from fulqrun_ml.federated.messages import FederatedError

MECHANISM = "client-level DP-FedAvg (clip each organisation's update, Gaussian noise on the sum)"
COVERS = (
    "the released global weights after every round, per organisation (client-level); not the clear per-round "
    "validation losses, final metrics, FeatureSpec statistics or row counts"
)


@dataclass(frozen=True)
class ClientDP:
    """`cfg.federated.dp`: noise multiplier sigma (0 is off), clipping norm C, and delta for the accounting."""

    noise_multiplier: float = 0.0
    clip_norm: float = 0.1  # configs/federated/fedavg.yaml says why
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not math.isfinite(self.noise_multiplier) or self.noise_multiplier < 0:
            raise FederatedError(f"federated.dp.noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not math.isfinite(self.clip_norm) or self.clip_norm <= 0:
            raise FederatedError(f"federated.dp.clip_norm must be > 0, got {self.clip_norm}")
        if not 0 < self.delta < 1:
            raise FederatedError(f"federated.dp.delta must be in (0, 1), got {self.delta}")

    @property
    def enabled(self) -> bool:
        return self.noise_multiplier > 0

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> ClientDP:
        section = dict(section or {})
        unknown = sorted(set(section) - {"noise_multiplier", "clip_norm", "delta"})
        if unknown:
            expected = "noise_multiplier, clip_norm, delta"
            raise FederatedError(f"federated.dp has unknown keys {unknown}; expected {expected}")
        try:
            return cls(**{k: float(v) for k, v in section.items()})
        except (TypeError, ValueError) as error:
            raise FederatedError(f"federated.dp values must be numbers: {error}") from None


def global_norm(tensors: Mapping[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in tensors.values()))


def clip(tensors: Mapping[str, np.ndarray], clip_norm: float) -> dict[str, np.ndarray]:
    """Scale all tensors together so their joint L2 norm is at most `clip_norm` (unchanged when already below)."""
    factor = min(1.0, clip_norm / max(global_norm(tensors), 1e-12))
    return {name: np.asarray(value, dtype=np.float64) * factor for name, value in tensors.items()}


def noised_mean(
    summed: Mapping[str, np.ndarray], count: int, dp: ClientDP, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """(sum of clipped updates + N(0, (sigma C)^2 I)) / count: the private mean update of one round."""
    scale = dp.noise_multiplier * dp.clip_norm
    return {name: (value + rng.normal(0.0, scale, size=value.shape)) / count for name, value in summed.items()}


def accounting(dp: ClientDP, noised_rounds: int, n_clients: int) -> dict[str, Any]:
    """(epsilon, delta) of `noised_rounds` Gaussian releases at sampling rate 1, by Opacus' RDP accountant;
    the keys are the ones the model card's privacy section reads."""
    accountant = RDPAccountant()
    if noised_rounds > 0:
        accountant.history.append((dp.noise_multiplier, 1.0, noised_rounds))
    epsilon = float(accountant.get_epsilon(dp.delta)) if noised_rounds > 0 else 0.0
    return {
        "mechanism": MECHANISM,
        "unit": "organisation (client-level)",
        "epsilon": epsilon,
        "delta": dp.delta,
        "accountant": "rdp",
        "noise_multiplier": dp.noise_multiplier,
        "max_grad_norm": dp.clip_norm,
        "sample_rate": 1.0,
        "steps": noised_rounds,
        "n_train": f"{n_clients} organisations'",  # the model card prints "over <n_train> training rows"
        "covers": COVERS,
    }
