"""Frames a caller has already prepared, as a tabular datamodule `train()` can run on.

A study that chooses its own rows (the learning curve trains on nested subsets of one large CRM, scored on one
fixed holdout) must still train exactly like `fulqrun-ml train`: same pipeline, callbacks, recipe and evaluation.
It hands its train/val/test frames and the FeatureSpec it fitted on them to `train(cfg, datamodule=...)` through
this module, instead of writing a training loop of its own.
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.datamodules.tabular import SPLITS, TabularDataModuleBase, dataset_hash
from fulqrun_ml.datamodules.task_builders import TargetKind
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.features.target import TargetScaling


class FramesDataError(FulqrunMLError, ValueError):
    """Frames that cannot be trained on (a split missing, no label, a regression without its scaling)."""


class FramesDataModule(TabularDataModuleBase):
    """Given train/val/test frames (with `label`) and a fitted FeatureSpec, offers what the tabular pipeline reads
    from any tabular datamodule; nothing is built or re-fitted here, so the caller's rows and encoders are the
    ones trained on. `baseline_columns` (who -> column of the test frame) are scored next to the model."""

    def __init__(
        self,
        frames: dict[str, pd.DataFrame],
        spec: FittedFeatureSpec,
        target_kind: TargetKind = "binary",
        baseline_columns: dict[str, str] | None = None,
        target_scaling: TargetScaling | None = None,
        leakage_audit: dict[str, int] | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__(batch_size)
        missing = [s for s in SPLITS if s not in frames or "label" not in frames[s].columns]
        if missing:
            raise FramesDataError(f"frames: splits {missing} are missing or have no 'label' column")
        if target_kind == "regression" and target_scaling is None:
            raise FramesDataError("target_scaling: a regression target needs the scaling fitted on its train split")
        self.frames = {s: frames[s].reset_index(drop=True) for s in SPLITS}
        self.spec = spec
        self.target_kind = target_kind
        self.target_scaling = target_scaling
        self.baseline_columns = dict(baseline_columns or {})
        self.leakage_audit = dict(leakage_audit or {})

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        # Hash what is trained and scored (features, labels, split), as the snapshot datamodule does.
        combined = pd.concat([self.frames[s].assign(split=s) for s in SPLITS], ignore_index=True)
        self.data_hash = dataset_hash(combined.drop(columns=list(self.baseline_columns.values()), errors="ignore"))
        self.sizes = {f"{s}_rows": len(self.frames[s]) for s in SPLITS}
        self._build_datasets()
