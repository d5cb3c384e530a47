"""The CRM snapshot datamodule for survival tasks: the same rows, features, audit and time split as every
tabular task (`tabular.TabularSnapshotDataModule`), with a two-column training target.

A survival likelihood needs both whether a row's event happened and when, so `target` is [N, 2] =
(event 0/1, duration_days). The frame keeps `label` = the event, so binary-style tooling still reads it.
"""

from __future__ import annotations

import numpy as np

from fulqrun_ml.datamodules.tabular import TabularSnapshotDataModule


class SurvivalSnapshotDataModule(TabularSnapshotDataModule):
    """Snapshots from a builder of kind "survival" (frames with `label` and `duration_days`)."""

    def setup(self, stage: str | None = None) -> None:
        if self.target_kind != "survival":
            raise ValueError(
                f"{type(self).__name__} needs a survival builder, got {self.builder.name} ({self.target_kind})"
            )
        super().setup(stage)

    def target(self, split: str) -> np.ndarray:
        frame = self.frames[split]
        return np.stack(
            [frame["label"].to_numpy(dtype=np.float32), frame["duration_days"].to_numpy(dtype=np.float32)], axis=1
        )
