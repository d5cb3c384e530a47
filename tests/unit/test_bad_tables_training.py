"""Training refuses data it cannot learn from with one line, exit code 2, and no directory left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.train import train

CLI = Path(sys.executable).parent / "fulqrun-ml"


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


def test_cli_prints_the_one_line_error_exits_2_and_leaves_no_run_dir(tmp_path):
    args = [
        str(CLI),
        "train",
        "task=table",
        "data=table",
        f"data.path={constant_table(tmp_path / 't.csv')}",
        "data.target=y",
        "logger=none",
        f"paths.root_dir={tmp_path}",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": ""})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: field 'y': the target is constant" in done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    runs = tmp_path / "logs" / "table" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_cli_unwraps_our_error_from_hydras_instantiation_error(tmp_path):
    """A data module's constructor refusing the config reaches the user as its own message, not Hydra's wrapper."""
    args = [str(CLI), "train", "data=table", f"data.path={tmp_path / 'x.csv'}", "data.target=y", "logger=none"]
    done = subprocess.run([*args, f"paths.root_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: data=table trains under task=table" in done.stderr
    assert "Error in call to target" not in done.stderr and "Traceback" not in done.stderr
