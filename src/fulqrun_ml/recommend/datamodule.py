"""Logged action history -> DR pseudo-outcomes -> batches for the effect network.

Why its own datamodule: the effect network's target is not a CRM label but the doubly robust pseudo-outcome of
every arm, which needs the nuisance models (outcome per arm, propensity per component) fitted first. Splits are by
decision date (train on the past); nuisances are cross-fitted on the training rows and predict the later splits,
so no row's target uses a model that saw it. The test split is never trained on: evaluation reads it against the
simulator's true effects.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_actions import ActionWorld, simulate_action_world
from fulqrun_ml.recommend.effect_model import ROW
from fulqrun_ml.recommend.learners import Nuisance, dr_pseudo_outcomes, fit_nuisance
from fulqrun_ml.tasks.supervised import TARGET

SPLITS = ("train", "val", "test")


def subset(world: ActionWorld, rows: np.ndarray) -> ActionWorld:
    """The world restricted to some decisions (states re-indexed)."""
    return ActionWorld(
        world.states.iloc[rows].reset_index(drop=True),
        *(np.asarray(getattr(world, name))[rows] for name in list(ActionWorld.__dataclass_fields__)[1:]),
    )


class UpliftDataModule(pl.LightningDataModule):
    """A simulated CRM (`crm`: simulate_crm's arguments) and its action world (`world`: simulate_action_world's),
    or a given `action_world`, split by decision date into train / val / test."""

    def __init__(
        self,
        crm: dict[str, Any] | None = None,
        world: dict[str, Any] | None = None,
        val_share: float = 0.15,
        test_share: float = 0.25,
        batch_size: int = 512,
        folds: int = 2,
        seed: int = 0,
        action_world: ActionWorld | None = None,
    ) -> None:
        super().__init__()
        self.crm_args, self.world_args = dict(crm or {}), dict(world or {})
        self.val_share, self.test_share = val_share, test_share
        self.batch_size, self.folds, self.seed = batch_size, folds, seed
        self.world = action_world
        self.frames: dict[str, pd.DataFrame] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.frames:
            return
        if self.world is None:
            self.world = simulate_action_world(simulate_crm(**self.crm_args), **self.world_args)
        world = self.world
        order = np.argsort(world.states["as_of"].to_numpy(), kind="stable")
        n_test, n_val = int(len(order) * self.test_share), int(len(order) * self.val_share)
        n_train = len(order) - n_val - n_test
        self.rows = {
            "train": order[:n_train],
            "val": order[n_train : n_train + n_val],
            "test": order[n_train + n_val :],
        }
        self.worlds = {s: subset(world, r) for s, r in self.rows.items()}
        train = self.worlds["train"]
        self.nuisance: Nuisance = fit_nuisance(train.states, train.logged_action, train.won, self.seed, self.folds)
        self.spec = self.nuisance.spec
        self.targets = {"train": dr_pseudo_outcomes(self.nuisance.mu, self.nuisance.e, train.logged_action, train.won)}
        for split in ("val", "test"):
            w = self.worlds[split]
            mu, e = self.nuisance.outcome(w.states, w.logged_action), self.nuisance.propensity(w.states)
            self.targets[split] = dr_pseudo_outcomes(mu, e, w.logged_action, w.won)
        self.frames = {s: self.worlds[s].states for s in SPLITS}
        self.arrays = {s: self.spec.encode(self.frames[s]) for s in SPLITS}

    @property
    def sizes(self) -> dict[str, int]:
        return {s: len(self.frames[s]) for s in SPLITS}

    @property
    def n_outputs(self) -> int:
        return self.targets["train"].shape[1]

    @property
    def data_hash(self) -> str:
        """Hash of the logged history the model learns from (states, actions, outcomes)."""
        digest = hashlib.sha256(pd.util.hash_pandas_object(self.world.states, index=False).to_numpy().tobytes())
        digest.update(np.ascontiguousarray(self.world.logged_action).tobytes())
        digest.update(np.ascontiguousarray(self.world.won).tobytes())
        return digest.hexdigest()[:16]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        arrays, target = self.arrays[split], self.targets[split].astype(np.float32)

        def collate(index: list[int]) -> dict[str, torch.Tensor]:
            rows = np.asarray(index)
            return {
                "continuous": torch.from_numpy(arrays["continuous"][rows]),
                "categorical": torch.from_numpy(arrays["categorical"][rows]),
                TARGET: torch.from_numpy(target[rows]),
                ROW: torch.from_numpy(rows),
            }

        return DataLoader(range(len(target)), batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
