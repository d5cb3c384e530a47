"""Where the project's non-Python assets live: Hydra configs and Triton templates.

Both sit at the repository root (see ARCHITECTURE.md), next to `src/`, and the package is installed
editable by `scripts/bootstrap`. FULQRUN_CONFIG_DIR / FULQRUN_TEMPLATE_DIR point elsewhere if needed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
