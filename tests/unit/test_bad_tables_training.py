"""Training refuses data it cannot learn from with one line, exit code 2, and no directory left behind.

The command-line cases call the CLI's own `main` in-process (a `fulqrun-ml` subprocess pays ~10 s of imports
each); that `main`'s status becomes the process's exit code is checked once, by a real subprocess, in
tests/integration/test_cli.py::test_errors_are_messages_not_tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.train import train


def constant_table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=300), "plan": rng.choice(["a", "b"], 300), "y": 7.0}).to_csv(path, index=False)
    return path


def test_a_constant_target_is_refused_and_the_empty_run_dir_removed(tmp_path):
    out = tmp_path / "logs" / "run"
    (out / ".hydra").mkdir(parents=True)  # what Hydra leaves before train() starts
    (out / "cli.log").write_text("")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={out}",
                f"paths.root_dir={tmp_path}",
                "task=table",
                "data=table",
                f"data.path={constant_table(tmp_path / 't.csv')}",
                "data.target=y",
                "logger=none",
                "trainer.max_epochs=1",
            ],
        )
    with pytest.raises(
        FieldValidationError, match=r"field 'y': the target is constant \(7\.0 in all \d+ training rows"
    ):
        train(cfg)
    assert not out.exists()


def test_cli_prints_the_one_line_error_exits_2_and_leaves_no_run_dir(tmp_path, run_cli):
    args = [
        "train",
        "task=table",
        "data=table",
        f"data.path={constant_table(tmp_path / 't.csv')}",
        "data.target=y",
        "logger=none",
        f"paths.root_dir={tmp_path}",
    ]
    code, stdout, stderr = run_cli(*args, env={"HYDRA_FULL_ERROR": ""})
    assert code == 2, stderr[-2000:]
    assert "error: field 'y': the target is constant" in stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    runs = tmp_path / "logs" / "table" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_cli_unwraps_our_error_from_hydras_instantiation_error(tmp_path, run_cli):
    """A data module's constructor refusing the config reaches the user as its own message, not Hydra's wrapper."""
    args = ["train", "data=table", f"data.path={tmp_path / 'x.csv'}", "data.target=y", "logger=none"]
    code, _, stderr = run_cli(*args, f"paths.root_dir={tmp_path}")
    assert code == 2, stderr[-2000:]
    assert "error: data=table trains under task=table" in stderr
    assert "Error in call to target" not in stderr and "Traceback" not in stderr
