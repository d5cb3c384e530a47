"""docs/architecture.md's worked examples run as written, and its run-record table matches the record.

Every fenced block with a `file=` name is written to a scratch directory: Python under it (on sys.path), YAML
under a Hydra search path, exactly as a reader would add them to src/ and configs/. Then the examples train,
evaluate and export through the one `train()`.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import REPO_ROOT
from fulqrun_ml.registry.run_record import RunRecord
from fulqrun_ml.training.train import train

DOC = REPO_ROOT / "docs" / "architecture.md"
BLOCK = re.compile(r"^```(?:python|yaml) file=(\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FAST = ["logger=none", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "data.source.n_opportunities=700"]


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("doc_examples")
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) >= 5, "the worked examples lost their file= blocks"
    for name, text in blocks:
        path = root / ("configs" if name.endswith(".yaml") else "src") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sys.path.insert(0, str(root / "src"))
    yield root
    sys.path.remove(str(root / "src"))
    for module in [m for m in sys.modules if m.startswith("doc_examples")]:
        del sys.modules[module]


def _run(examples: Path, compose_train, tmp_path: Path, *overrides: str) -> dict:
    search = f"hydra.searchpath=[file://{examples / 'configs'}]"
    return train(compose_train(tmp_path / "run", search, *FAST, *overrides))


def test_a_new_backbone_and_a_new_task_train_and_export(examples, compose_train, tmp_path):
    result = _run(examples, compose_train, tmp_path, "task=deal_win_90d", "model=linear")
    record = RunRecord.load(result["run_dir"])
    assert record.task == "deal_win_90d" and record.model == "linear" and record.kind == "binary"
    assert record.calibration["method"] == "isotonic" and record.config["data"]["horizon_days"] == 90
    version, parity = load_pipeline(record).export(result["run_dir"], tmp_path / "models")
    assert version.name == "deal_win_90d" and parity < 1e-3


def test_a_new_pipeline_trains_its_arms_and_exports(examples, compose_train, tmp_path):
    result = _run(examples, compose_train, tmp_path, "task=deal_win_bagged", "model=linear")
    record = RunRecord.load(result["run_dir"])
    assert record.pipeline == "doc_examples.bagged_pipeline.BaggedPipeline"
    assert set(record.arms) == {"bag_1"} and set(record.extra["bags"]) == {"model", "bag_1"}
    assert (Path(result["run_dir"]) / "bag_1" / "checkpoints" / "last.ckpt").is_file()
    version, parity = load_pipeline(record).export(result["run_dir"], tmp_path / "models")
    assert version.metadata["pipeline"] == record.pipeline and parity < 1e-5


def test_every_run_record_field_is_documented():
    table = DOC.read_text().split("## The run record")[1].split("## ")[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE))
    assert documented == {f.name for f in dataclasses.fields(RunRecord)}
