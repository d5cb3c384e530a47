"""Resume support: where to resume from (`ckpt_path=`), and the RNG state Lightning does not save.

Lightning's checkpoint restores weights, optimizer, loop counters and callback state (best score, early
stopping patience), but not the global random generators. Those drive the training sampler's shuffling
and dropout, so without them a resumed run draws different batches from the next epoch on and its
final metrics drift from an uninterrupted run. `RNGStateCheckpoint` stores the torch / numpy / Python
generator states in every checkpoint and puts them back as soon as Lightning restores the callbacks.
That is early enough: on resume Lightning creates the first epoch's data iterator (which draws the
sampler's seed) before `on_train_epoch_start`, and the sanity-check validation in between runs inside
Lightning's `isolate_rng`, so it does not shift the restored state.

Exactness holds for end-of-epoch checkpoints (the default: last.ckpt is written after each validation).
A checkpoint taken mid-epoch (`every_n_train_steps`) resumes too, but Lightning restarts that epoch's
sampler, so the batches after it differ and so may the final metrics.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from fulqrun_ml.errors import FulqrunMLError

LAST_CHECKPOINT = "last.ckpt"


class ResumeError(FulqrunMLError):
    """`ckpt_path` names no usable checkpoint."""


def collect_rng_states() -> dict[str, Any]:
    """Generator states as plain tensors/lists, so the checkpoint also loads with `weights_only=True`."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


class RNGStateCheckpoint(pl.Callback):
    """Saves the global RNG states with each checkpoint; restores them when training resumes."""

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            restore_rng_states(state_dict["rng"])


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path | None) -> str | None:
    """`null` -> fresh start; "last" -> `<checkpoint_dir>/last.ckpt`; a run or checkpoint directory ->
    its last.ckpt; a file -> itself. Anything that does not exist is an error naming `ckpt_path`."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        if checkpoint_dir is None:
            raise ResumeError("ckpt_path=last needs a ModelCheckpoint callback (callbacks.model_checkpoint)")
        candidate = Path(checkpoint_dir) / LAST_CHECKPOINT
        if not candidate.is_file():
            raise ResumeError(
                f"ckpt_path=last: no {candidate}. Resume in the interrupted run's directory "
                "(paths.output_dir=<that run dir> ckpt_path=last) or pass a checkpoint file or run directory"
            )
        return str(candidate)
    path = Path(ckpt_path)
    for candidate in (path, path / LAST_CHECKPOINT, path / "checkpoints" / LAST_CHECKPOINT):
        if candidate.is_file():
            return str(candidate)
    raise ResumeError(f"ckpt_path={ckpt_path}: no checkpoint file there (nor {LAST_CHECKPOINT} inside it)")
