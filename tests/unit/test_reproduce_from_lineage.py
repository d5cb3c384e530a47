"""Any registered model can be reproduced from its lineage: the stored config, the same code and data."""

import json
from pathlib import Path

from fulqrun_ml.project import git_commit
from fulqrun_ml.training.reproduce import config_from_lineage
from fulqrun_ml.training.train import train


def test_retraining_from_a_versions_lineage_gives_its_metrics(published, tmp_path):
    version, _ = published
    lineage = json.loads((version.path / "lineage.json").read_text())
    assert lineage["git_commit"].removesuffix("-dirty") == git_commit().removesuffix("-dirty")
    config = config_from_lineage(lineage, tmp_path / "reproduced")  # only where files go may differ
    assert lineage["run_dir"] not in str(config)
    reproduced = train(config)
    assert reproduced["data_hash"] == lineage["data_hash"]
    recorded = json.loads((version.path / "metrics.json").read_text())
    assert reproduced["metrics"]["model"] == recorded["model"]
    assert Path(reproduced["run_dir"]) != Path(lineage["run_dir"])
