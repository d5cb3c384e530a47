"""Where the project's non-Python assets live: Hydra configs and Triton templates.

Both sit at the repository root (see ARCHITECTURE.md), next to `src/`, and the package is installed
editable by `scripts/bootstrap`. FULQRUN_CONFIG_DIR / FULQRUN_TEMPLATE_DIR point elsewhere if needed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(os.environ.get("FULQRUN_CONFIG_DIR", REPO_ROOT / "configs"))
TEMPLATE_DIR = Path(os.environ.get("FULQRUN_TEMPLATE_DIR", REPO_ROOT / "serving"))


def git_commit() -> str:
    """The code version for lineage: commit hash, with '-dirty' if the tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def compose_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """A root config (`train`, `serve`, ...) composed from CONFIG_DIR with overrides, as the command line does.

    Why here: the CLI, the end-to-end run, the sweep and the benchmarks all compose the same configs; one helper
    keeps Hydra's global initialisation (entered and left around every compose) in one place."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))
