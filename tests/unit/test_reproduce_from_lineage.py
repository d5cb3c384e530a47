"""Any registered model can be reproduced from its lineage: the stored config, the same code and data."""

import json
import subprocess
from pathlib import Path

import pytest

from fulqrun_ml.project import REPO_ROOT, git_commit
from fulqrun_ml.training.reproduce import config_from_lineage
from fulqrun_ml.training.train import train


def test_retraining_from_a_versions_lineage_gives_its_metrics(published, tmp_path):
    version, _ = published
    lineage = json.loads((version.path / "lineage.json").read_text())
    # The recorded commit is this checkout's HEAD or an ancestor of it (someone may commit while tests run).
    recorded_commit = lineage["git_commit"].removesuffix("-dirty")
    head = git_commit().removesuffix("-dirty")
    if head == "unknown":  # not a git checkout: nothing to compare but the marker itself
        assert recorded_commit == "unknown"
    else:
        ancestor = subprocess.run(
            ["git", "merge-base", "--is-ancestor", recorded_commit, head], cwd=REPO_ROOT, check=False
        )
        assert len(recorded_commit) == 40 and ancestor.returncode == 0
    config = config_from_lineage(lineage, tmp_path / "reproduced")  # only where files go may differ
    assert lineage["run_dir"] not in str(config)
    reproduced = train(config)
    assert reproduced["data_hash"] == lineage["data_hash"]
    recorded = json.loads((version.path / "metrics.json").read_text())
    # The same numbers up to the last bits of the post-hoc calibration fit (L-BFGS on float32 logits).
    assert reproduced["metrics"]["model"] == pytest.approx(recorded["model"], rel=1e-6)
    assert Path(reproduced["run_dir"]) != Path(lineage["run_dir"])
