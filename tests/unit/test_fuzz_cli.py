"""Hostile command lines through the real `fulqrun-ml` entry in-process (issue 19 item 7): Hydra overrides with
config-group traversal (`task=../x`, absolute paths, NUL), broken override grammar, unknown keys, and hostile values
for the trainer knobs and the seed (words, NaN/inf, negative, lists, dicts, interpolations, 5,000 characters).
Each exits non-zero with a message and no Python traceback, and the run root (logs/, models/) is left as it was:
no run directory, no W&B files. Every value here is invalid, so no example trains."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from fulqrun_ml.cli import main
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.config_checks import RunConfigError, check_run_config

KNOBS = [
    "trainer.max_epochs",
    "trainer.min_epochs",
    "trainer.log_every_n_steps",
    "trainer.limit_train_batches",
    "trainer.gradient_clip_val",
    "trainer.precision",
    "trainer.deterministic",
    "seed",
]
BAD_VALUES = [
    "abc",
    "nan",
    "inf",
    "-7",
    "[1,2]",
    "{a: 1}",
    "x" * 5000,
    "1e309",
    "0.5.5",
    "''",
    "-0.5",
    "${oc.env:HOME}",
]
BROKEN = [  # each is one in-process Hydra start (~0.5 s): one of each kind
    "task=../x",
    "model=/etc/passwd",
    "model=[",
    "trainer.bogus_key=1",
    "=1",
    "task=deal\x00win",
    "~task",
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def run_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FULQRUN_ROOT", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "models").mkdir()
    (tmp_path / "logs").mkdir()  # the run root's own layout; what a failed run adds under it must go again
    return tmp_path


def _train_fails_cleanly(argv: list[str], root: Path, capsys: pytest.CaptureFixture) -> str:
    before = _tree(root)
    try:
        code = main(["train", *argv, "data.source.n_opportunities=60", "data.source.n_companies=20"])
    except SystemExit as exc:  # Hydra exits 1 on a config error; our errors exit 2
        code = exc.code
    out = capsys.readouterr()
    assert code not in (0, None), out
    assert "Traceback" not in out.err + out.out, out.err[-2000:]
    assert _tree(root) == before, "a failed run left files behind"
    dangling = [
        h.baseFilename
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).is_relative_to(root)
    ]
    assert not dangling, f"log handlers still point into the removed run directory: {dangling}"
    return out.err


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(key=st.sampled_from(KNOBS), value=st.sampled_from(BAD_VALUES))
def test_a_hostile_trainer_value_through_the_cli_is_one_error_line_naming_the_key(run_root, capsys, key, value):
    """Two examples through the whole entry (Hydra composes and makes its run directory: ~1.5 s each)."""
    err = _train_fails_cleanly([f"{key}={value}"], run_root, capsys)
    assert err.startswith("error: ") and key in err, err[-1000:]


@pytest.fixture(scope="module")
def train_cfg():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=/nonexistent"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(key=st.sampled_from(KNOBS), value=st.sampled_from(BAD_VALUES) | st.text(max_size=8) | st.floats())
def test_every_hostile_trainer_value_hydra_can_parse_is_refused_naming_the_key(train_cfg, key, value):
    """The same check on the composed config, many values: each value goes through Hydra's own override parser,
    as the command line would; whatever it yields for the key is refused unless Lightning could use it."""
    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
    except HydraException:
        return  # Hydra refuses it itself (the CLI test above shows that message)
    cfg = train_cfg.copy()
    OmegaConf.update(cfg, key, override.value(), force_add=True)
    parsed = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    try:
        check_run_config(cfg)
    except RunConfigError as err:
        assert str(err).startswith(f"{key}="), err
        return
    assert _usable(key, parsed), f"{key}={parsed!r} was accepted"


def _usable(key: str, value: object) -> bool:
    """What Lightning accepts, written from its documentation (not from config_checks.py)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if key in ("trainer.max_epochs",):
        return value is None or (is_int and value >= -1)
    if key in ("trainer.min_epochs",):
        return value is None or (is_int and value >= 0)
    if key == "trainer.log_every_n_steps":
        return value is None or (is_int and value >= 1)
    if key == "trainer.limit_train_batches":
        return value is None or (is_int and value >= 0) or (isinstance(value, float) and 0 <= value <= 1)
    if key == "trainer.gradient_clip_val":
        return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e308)
    if key == "trainer.precision":
        return value in ("32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", 32, 64, 16, "32")
    if key == "trainer.deterministic":
        return isinstance(value, bool)
    return is_int and 0 <= value < 2**32  # seed


@pytest.mark.parametrize("override", BROKEN)
def test_a_broken_or_traversing_override_is_refused_before_any_run_directory(run_root, capsys, override):
    _train_fails_cleanly([override], run_root, capsys)
    assert not Path("/tmp/fulqrun-fuzz-escape").exists()
