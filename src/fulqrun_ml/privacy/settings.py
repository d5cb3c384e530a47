"""`trainer.privacy`: the (ε, δ, max_grad_norm) a run is asked to train under, read and checked before any data.

Why a key of the trainer group: DP-SGD changes how the optimiser steps (per-example clipping plus Gaussian
noise) and how batches are drawn (Poisson sampling), not what the task or backbone is, so any `task=... model=...`
pair asks for it the same way: `fulqrun-ml train trainer.privacy.epsilon=3 trainer.privacy.delta=1e-5`.
`epsilon: null` (the default) is ordinary training. The key is removed before the rest of the group becomes a
`pytorch_lightning.Trainer`, which would not accept it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.errors import FulqrunMLError

PRIVACY_KEY = "privacy"
ACCOUNTANT = "rdp"  # Opacus' Rényi accountant: the one its own `make_private_with_epsilon` defaults to


class PrivacyConfigError(FulqrunMLError):
    """DP-SGD was asked for with settings, a backbone or a run mode that cannot honour it; names the key."""


@dataclass(frozen=True)
class PrivacySettings:
    """A target privacy budget. `delta` defaults to 1/(10·n_train) at fit time when left null, the usual choice
    (well below 1/n, so no single row may be published outright)."""

    epsilon: float
    delta: float | None
    max_grad_norm: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(section: dict[str, Any], key: str, default: float | None) -> float | None:
    value = section.get(key, default)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PrivacyConfigError(f"trainer.privacy.{key}={value!r} is not a number") from None
    if math.isnan(number):
        raise PrivacyConfigError(f"trainer.privacy.{key} is NaN")
    return number


def privacy_settings(trainer_cfg: DictConfig | dict[str, Any] | None) -> PrivacySettings | None:
    """The settings of `cfg.trainer.privacy`, or None when DP is off (no key, `epsilon: null` or `inf`)."""
    if trainer_cfg is None:
        return None
    section = trainer_cfg.get(PRIVACY_KEY) if hasattr(trainer_cfg, "get") else None
    if section is None:
        return None
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    if not isinstance(section, dict):
        raise PrivacyConfigError(f"trainer.privacy must be a mapping with epsilon, delta, max_grad_norm: {section!r}")
    unknown = sorted(set(section) - {"epsilon", "delta", "max_grad_norm"})
    if unknown:
        raise PrivacyConfigError(f"trainer.privacy has unknown keys {unknown}; expected epsilon, delta, max_grad_norm")
    epsilon = _number(section, "epsilon", None)
    if epsilon is None or math.isinf(epsilon):
        return None
    delta = _number(section, "delta", None)
    max_grad_norm = _number(section, "max_grad_norm", 1.0)
    if epsilon <= 0:
        raise PrivacyConfigError(f"trainer.privacy.epsilon={epsilon} must be > 0 (null or inf turns DP off)")
    if delta is not None and not 0 < delta < 1:
        raise PrivacyConfigError(f"trainer.privacy.delta={delta} must be in (0, 1)")
    if max_grad_norm is None or max_grad_norm <= 0:
        raise PrivacyConfigError(f"trainer.privacy.max_grad_norm={max_grad_norm} must be > 0")
    return PrivacySettings(epsilon, delta, max_grad_norm)


def trainer_kwargs(trainer_cfg: DictConfig) -> DictConfig:
    """The trainer group without the privacy key, ready for `instantiate` as a `pytorch_lightning.Trainer`."""
    if PRIVACY_KEY not in trainer_cfg:
        return trainer_cfg
    plain = OmegaConf.to_container(trainer_cfg, resolve=True)
    plain.pop(PRIVACY_KEY)
    return OmegaConf.create(plain)
