"""Server-side aggregation: FedAvg over the accepted weight deltas, after each delta is checked.

FedAvg (McMahan et al. 2017): new = global + sum_k n_k delta_k / sum_k n_k, with n_k the client's training rows.
FedProx (Li et al. 2020) aggregates the same way. Its proximal term lives in the clients' local objective
(`local.FedProxCallback`), so the server is one function for both.

Why the checks live here, not only in the schema: a delta with the right names and shapes can still hold NaN or
inf (a diverged client, or a hostile one). One such value would poison the global model for every
organisation, so it is refused by client and tensor name, and the round goes on without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fulqrun_ml.federated.messages import MessageRejected


@dataclass(frozen=True)
class ClientUpdate:
    client_id: str
    delta: dict[str, np.ndarray]
    n_examples: int
    val_log_loss: float
    n_val: int


def shared_state(net: torch.nn.Module) -> dict[str, np.ndarray]:
    """The floating-point state_dict entries (parameters and float buffers): what FedAvg averages."""
    return {
        k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items() if v.is_floating_point()
    }


def load_shared_state(net: torch.nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Load averaged entries into `net`; integer buffers (BatchNorm's counters) keep their local values."""
    current = net.state_dict()
    for name, value in state.items():
        current[name] = torch.from_numpy(np.array(value, dtype=np.float32)).to(current[name].dtype)
    net.load_state_dict(current)


def shapes_of(state: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def check_update(update: ClientUpdate) -> None:
    """Refuse a delta holding NaN/inf, or a count that cannot weight it; names the client and the tensor."""
    if update.n_examples <= 0:
        raise MessageRejected(update.client_id, "n_examples", f"must be positive, got {update.n_examples}")
    for name, value in update.delta.items():
        if not np.isfinite(value).all():
            raise MessageRejected(update.client_id, f"tensor '{name}'", "holds NaN or infinite values")
    if not np.isfinite(update.val_log_loss):
        raise MessageRejected(update.client_id, "val_log_loss", "is not finite")


def fedavg(global_state: Mapping[str, np.ndarray], updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
    """The example-weighted mean delta applied to the global state; no updates leave it unchanged."""
    if not updates:
        return {k: v.copy() for k, v in global_state.items()}
    total = float(sum(u.n_examples for u in updates))
    new_state = {}
    for name, value in global_state.items():
        step = sum(np.float64(u.n_examples) * u.delta[name].astype(np.float64) for u in updates) / total
        new_state[name] = (value.astype(np.float64) + step).astype(np.float32)
    return new_state


def apply_step(global_state: Mapping[str, np.ndarray], step: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """global + step, in float64, stored as float32 (the wire and model dtype)."""
    return {
        name: (value.astype(np.float64) + np.asarray(step[name], dtype=np.float64)).astype(np.float32)
        for name, value in global_state.items()
    }


def plain_sum(updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
    """The unweighted float64 sum of the deltas (client-level DP weighs every organisation 1)."""
    names = updates[0].delta
    return {name: sum(u.delta[name].astype(np.float64) for u in updates) for name in names}
