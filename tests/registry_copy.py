"""A private copy of one published version, for tests that publish more versions or move aliases.

WHY: the session's `published` registry (tests/conftest.py) is shared read-only by every test. A test that
publishes into it changes what "latest" is for the tests that run after it, and which tests those are differs
between a serial run and pytest-xdist's workers: under two workers a territory test read deal_win version 3
where it expected the session's version 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fulqrun_ml.registry.store import ModelVersion, get_version


def copy_version(version: ModelVersion, models_dir: Path) -> ModelVersion:
    """`version` alone (same number, same files) in a registry of its own under `models_dir`."""
    shutil.copytree(version.path, models_dir / version.name / str(version.version))
    return get_version(models_dir, version.name, version.version)
