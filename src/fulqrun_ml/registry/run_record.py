"""The run record: `run_info.json`, one typed, versioned description of a finished training run.

Why one record: export, the model card, the registry, `serve`, `predict`, `score`, the leaderboard and the CLI
all need to know what a run is (which pipeline made it, its target kind, how it was calibrated, which data).
Before this record each of them guessed (task names, which files exist, which metric keys exist), and the
guesses drifted apart. Now `train()` writes this record last (so its presence marks a finished run) and every
consumer reads it with `RunRecord.load`, which refuses a missing, unreadable or older-schema file by name.

It lives in the registry layer because the registry, export and serving read it and sit below training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulqrun_ml.data.snapshot_files import snapshot_exists
from fulqrun_ml.errors import FulqrunMLError

RUN_RECORD_FILE = "run_info.json"
RUN_RECORD_VERSION = 1
KINDS = ("binary", "regression", "survival", "forecast", "multiclass")
# What every exporter copies from the record into a version's lineage.json (plus pipeline-specific `extra`).
LINEAGE_KEYS = (
    "pipeline",
    "task",
    "kind",
    "model",
    "config",
    "net_config",
    "data_hash",
    "git_commit",
    "wandb_run_id",
    "run_dir",
    "sizes",
    "epochs",
    "experiment",
    "data_window",
    "parent",
    "init_from",
    "resumed_from",
    "wandb_artifacts",
    "calibration",
    "extra",
)


class RunRecordError(FulqrunMLError):
    """A run directory has no usable run record (unfinished run, foreign file, older schema)."""


@dataclass(frozen=True)
class RunRecord:
    """Everything a finished run says about itself. `pipeline` is the dotted class path of the pipeline plugin
    that trained it; consumers dispatch on it and on `kind`, never on the task's name."""

    pipeline: str
    task: str
    kind: str
    model: str
    run_dir: str
    net_config: dict[str, Any]
    config: dict[str, Any]
    data_hash: str
    git_commit: str
    seed: int
    epochs: int
    best_checkpoint: str
    sizes: dict[str, Any]
    data_window: dict[str, Any]
    seconds: dict[str, Any]
    world_size: int = 1
    experiment: str = "none"
    wandb_run_id: str | None = None
    wandb_artifacts: dict[str, str] | None = None
    parent: dict[str, Any] | None = None
    init_from: str | None = None
    resumed_from: str | None = None
    # The calibration the run applied, with what it was fitted on (split, rows, hash); None where the kind has none.
    calibration: dict[str, Any] | None = None
    # Arms trained besides the model itself (ensemble members, ablations): name -> {epochs, best_checkpoint}.
    arms: dict[str, Any] = field(default_factory=dict)
    # Pipeline-specific facts (survival grid, forecast series, sequence vocabulary sizes, leakage audit, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = RUN_RECORD_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RunRecordError(f"run record: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if "." not in self.pipeline:
            raise RunRecordError(f"run record: pipeline must be a dotted class path, got {self.pipeline!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lineage(self) -> dict[str, Any]:
        """The keys a published version's lineage.json carries."""
        data = self.to_dict()
        return {k: data[k] for k in LINEAGE_KEYS}

    def save(self, run_dir: Path | str) -> Path:
        """Write atomically (temp file + rename): a reader sees the whole record or none."""
        path = Path(run_dir) / RUN_RECORD_FILE
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".run_info.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.to_dict(), handle, indent=2, default=str)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, run_dir: Path | str) -> RunRecord:
        """The record of a finished run; a clear error when the directory holds none or an unusable one."""
        path = Path(run_dir) / RUN_RECORD_FILE
        if not path.is_file():
            raise RunRecordError(f"{run_dir} is not a finished training run (no {RUN_RECORD_FILE})")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunRecordError(f"{path}: unreadable run record ({exc})") from exc
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != RUN_RECORD_VERSION:
            raise RunRecordError(
                f"{path}: run record schema {version!r}, this code reads {RUN_RECORD_VERSION}; "
                "retrain the run with this version of fulqrun-ml"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f))
        if unknown or missing:
            raise RunRecordError(f"{path}: run record fields unknown {unknown}, missing {missing}")
        return cls(**data)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def finished_runs(log_dir: Path | str, task: str | None = None) -> list[Path]:
    """Finished run directories under `log_dir` (<task>/runs/<time>/ and sweeps), oldest first, optionally of
    one task as its record names it (not as its directory is called)."""
    runs = []
    for path in Path(log_dir).glob(f"**/{RUN_RECORD_FILE}"):
        try:
            record = RunRecord.load(path.parent)
        except RunRecordError:
            continue
        if task is None or record.task == task:
            runs.append(path)
    return [p.parent for p in sorted(runs, key=lambda p: p.stat().st_mtime)]


def version_holdout_path(version_dir: Path) -> Path | None:
    """The holdout.parquet of the run a published version was exported from (its lineage's `run_dir`), or
    None when the version records no run or that run is no longer on disk. Monitors, reports and benchmarks
    use it as the version's reference rows."""
    lineage = Path(version_dir) / "lineage.json"
    run_dir = json.loads(lineage.read_text()).get("run_dir") if lineage.is_file() else None
    path = Path(run_dir) / "holdout.parquet" if run_dir else None
    return path if path is not None and snapshot_exists(path) else None  # plain or sealed (read_snapshot)
