"""Check the run's trainer knobs and seed before anything is built, so a bad override is one line naming the key.

Why: Hydra passes `trainer.max_epochs=abc` through as the string 'abc'; Lightning only trips over it deep inside
`fit` (a bare `assert isinstance(self.max_epochs, int)`), after the data was simulated, features fitted and a W&B run
opened, so the user got a traceback and a run directory full of W&B files for a typo. Found by
tests/unit/test_fuzz_cli.py. Only the knobs our configs set or document are checked here; anything else still
reaches Lightning, which validates the rest when it builds the Trainer.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

from lightning_fabric.connector import _PRECISION_INPUT_STR

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import CONFIG_DIR

PRECISIONS = frozenset({*typing.get_args(_PRECISION_INPUT_STR), "16", "32", "64", "bf16", 16, 32, 64})
# key -> (smallest allowed int, whether None is allowed); Lightning's own meaning of -1 (no limit) is kept.
INTEGER_KNOBS = {
    "max_epochs": (-1, True),
    "min_epochs": (0, True),
    "max_steps": (-1, False),
    "log_every_n_steps": (1, True),
    "accumulate_grad_batches": (1, False),
    "check_val_every_n_epoch": (1, True),
    "num_nodes": (1, False),
}
BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")
BOOLEAN_KNOBS = ("enable_progress_bar", "deterministic", "enable_checkpointing", "enable_model_summary")
MAX_SEED = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces


class RunConfigError(FulqrunMLError):
    """A trainer knob or the seed has a value Lightning cannot use; the message names the key and the value."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_run_config(cfg: Mapping[str, Any]) -> None:
    """Raise RunConfigError for the first bad `trainer.*` knob (see the tables above) or `seed`."""
    trainer = cfg.get("trainer") or {}
    for key, (low, nullable) in INTEGER_KNOBS.items():
        if key not in trainer:
            continue
        value = trainer[key]
        if (value is None and not nullable) or (value is not None and not (_is_int(value) and value >= low)):
            raise RunConfigError(f"trainer.{key}={_show(value)}: expected an integer >= {low}")
    for key in BATCH_LIMITS:
        value = trainer.get(key)
        if value is None:
            continue
        ok = (_is_int(value) and value >= 0) or (isinstance(value, float) and math.isfinite(value) and 0 <= value <= 1)
        if not ok:
            raise RunConfigError(f"trainer.{key}={_show(value)}: expected a batch count >= 0 or a fraction in [0, 1]")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and not (isinstance(clip, int | float) and not isinstance(clip, bool) and 0 <= clip < math.inf):
        raise RunConfigError(f"trainer.gradient_clip_val={_show(clip)}: expected a finite number >= 0")
    for key in BOOLEAN_KNOBS:
        if key in trainer and not isinstance(trainer[key], bool):
            raise RunConfigError(f"trainer.{key}={_show(trainer[key])}: expected true or false")
    fast = trainer.get("fast_dev_run", False)
    if not (isinstance(fast, bool) or (_is_int(fast) and fast >= 0)):
        raise RunConfigError(f"trainer.fast_dev_run={_show(fast)}: expected true, false or a batch count >= 0")
    if "precision" in trainer and trainer["precision"] not in PRECISIONS:
        raise RunConfigError(
            f"trainer.precision={_show(trainer['precision'])}: expected one of {sorted(map(str, PRECISIONS))}"
        )
    seed = cfg.get("seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed <= MAX_SEED):
        raise RunConfigError(f"seed={_show(seed)}: expected an integer in [0, {MAX_SEED}]")


def override_problem(overrides: list[str]) -> str | None:
    """What Hydra would crash on with a traceback instead of a message: an override with nothing before '='
    (`=1` reaches Hydra's defaults list as a group named '' and raises a bare ValueError) and a deleted config
    group (`~task`: `hydra.run.dir` interpolates `task.name`). Grammar errors are left to Hydra, which reports them
    itself in one message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for text in overrides:
        if text.startswith("-"):
            continue  # Hydra's own flags (--cfg, --help, -m)
        try:
            (parsed,) = parser.parse_overrides([text])
        except (HydraException, ValueError):
            continue
        if not parsed.key_or_group:
            return f"override {_show(text)}: nothing before '='; write key=value (e.g. trainer.max_epochs=5)"
        if parsed.is_delete() and (CONFIG_DIR / parsed.key_or_group).is_dir():
            group = parsed.key_or_group  # the run's paths and names interpolate it: Hydra fails on a bare KeyError
            return f"override {_show(text)}: every run needs a '{group}' config; choose another ({group}=...)"
    return None
