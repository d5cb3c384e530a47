"""Shared fixtures: a tiny simulated CRM, a composed config, one trained + published tiny model, the CLI in-process.

Expensive things (training, export) run once per session and are shared read-only by the tests.
Configs are composed from the real `configs/` with `hydra.compose`, as `fulqrun-ml train` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.export.package import export_run
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.store import ModelVersion, list_versions
from fulqrun_ml.training.train import train

TINY_DATA = [
    "data.source.n_opportunities=1500",
    "data.source.n_companies=300",
    "data.source.n_reps=10",
]
FAST_TRAINER = ["trainer.max_epochs=3", "trainer.enable_progress_bar=false"]


@pytest.fixture(autouse=True)
def _root_logger_left_as_found() -> Iterator[None]:
    """Close the plain stream/file handlers a test left on the root logger (Hydra's job logging adds them).

    WHY: such a handler writes to the stream pytest captured for that test, closed once the test ends; py4j logs
    while shutting down after the session and printed "--- Logging error ---" tracebacks at the end of CI.
    Only exact StreamHandler/FileHandler types: pytest's own capture handlers are subclasses and stay put.
    """
    root = logging.getLogger()
    before = set(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in before]:
        if type(handler) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


@pytest.fixture(scope="session")
def tiny_crm() -> SimulatedCRM:
    return simulate_crm(n_opportunities=1500, n_companies=300, n_reps=10, seed=3)


@pytest.fixture(scope="session")
def compose_train() -> Callable[..., DictConfig]:
    def _compose(output_dir: Path, *overrides: str) -> DictConfig:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=[f"paths.output_dir={output_dir}", *TINY_DATA, *overrides])

    return _compose


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, compose_train) -> dict:
    """A tiny model trained with the real W&B logger in offline mode."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_train(root / "run", *FAST_TRAINER, f"paths.root_dir={root}")
    return train(cfg)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory, trained_run: dict) -> Iterator[tuple[ModelVersion, float]]:
    """deal_win v1 in a registry shared read-only by every test; a test that publishes or moves aliases works on
    `tests.registry_copy.copy_version`. At session end the registry must still hold v1 alone and no alias: a
    write changes what "latest" is for later tests, which differ between serial and pytest-xdist runs."""
    models_dir = tmp_path_factory.mktemp("models")
    version, seconds = export_run(Path(trained_run["run_dir"]), models_dir, "deal_win")
    aliases = read_alias_state(models_dir, "deal_win")
    yield version, seconds
    names = sorted(p.name for p in models_dir.iterdir())
    assert names == ["deal_win"] and list_versions(models_dir, "deal_win") == [1], (
        f"a test published into the shared session registry {models_dir}: {names}, "
        f"deal_win versions {list_versions(models_dir, 'deal_win')}; use tests.registry_copy.copy_version"
    )
    assert read_alias_state(models_dir, "deal_win") == aliases, "a test moved an alias in the shared session registry"


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """`fulqrun-ml ARGV` through the CLI's own `main`, in this process: (exit status, stdout, stderr).

    WHY: a `fulqrun-ml` subprocess pays ~10 s of CPU for its imports (torch, Lightning, Hydra) per call. A test
    about what a command does calls it here; that `main`'s status becomes the process's exit code is checked by
    real subprocesses in tests/integration/test_cli.py. `train` rewrites sys.argv for Hydra: restored afterwards.
    """

    def _run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        from fulqrun_ml.cli import main

        monkeypatch.setattr("sys.argv", ["fulqrun-ml", *argv])
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()  # only this command's output
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse and Hydra exit; their status is the answer
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return int(code or 0), out.out, out.err

    return _run
