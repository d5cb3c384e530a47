"""Pipeline plugins (tabular, sequence fusion, forecast) and the workflows built on them.

A task config chooses its pipeline by `_target_` (`task.pipeline`); `training.train.train` runs it, and the run
record names it, so `load_pipeline(run_dir)` finds the same plugin for export, headlines and sweeps without
looking at the task's name or the files in the run directory.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import get_class

from fulqrun_ml.registry.run_record import RunRecord, RunRecordError
from fulqrun_ml.training.pipeline import Pipeline


def load_pipeline(run: Path | str | RunRecord) -> Pipeline:
    """The pipeline plugin that trained a run (a run directory or its record)."""
    record = run if isinstance(run, RunRecord) else RunRecord.load(run)
    try:
        cls = get_class(record.pipeline)
    except (ImportError, ValueError) as exc:
        raise RunRecordError(f"run {record.run_dir}: pipeline {record.pipeline!r} cannot be imported ({exc})") from exc
    if not (isinstance(cls, type) and issubclass(cls, Pipeline)):
        raise RunRecordError(f"run {record.run_dir}: {record.pipeline!r} is not a pipeline plugin")
    return cls()
