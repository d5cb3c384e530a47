"""Federated vs centralised vs local-only deal-win models, per simulated organisation, on the same rows.

Why this design:
- every arm trains the same backbone with the same local step (`federated.local.train_locally`: the task's
  LightningModule and optimiser, one epoch at a time) for the same number of epochs (rounds x local epochs), and
  keeps the state with the lowest validation log loss. So the arms differ only in who sees which rows;
- federated arms are the real system: spawned organisation processes on the socket protocol. Their per-organisation
  test metrics are computed inside the organisations and come back as scalars;
- centralised pools the organisations' splits (rows the federated server never sees) and fits one FeatureSpec;
  local-only trains each organisation alone on its own FeatureSpec;
- every arm is scored on each organisation's own test split, next to the simulator's oracle on the same rows.
  The bench rebuilds the organisations' data in its own process from the same parameters, and checks that it
  equals the clients' data (test rows and positives per organisation).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.datamodules.tabular import SPLITS, TabularDataModuleBase
from fulqrun_ml.features.spec import FeatureSpec
from fulqrun_ml.federated.aggregate import load_shared_state, shared_state
from fulqrun_ml.federated.local import build_net, split_metrics, train_locally
from fulqrun_ml.federated.organisations import organisation_datamodule, profiles_from_config
from fulqrun_ml.federated.train import compose_config, train_federated

log = logging.getLogger(__name__)
METRIC_KEYS = ("auc", "log_loss", "n", "positives", "oracle_auc")


class PooledDataModule(TabularDataModuleBase):
    """The organisations' splits concatenated, with one FeatureSpec fitted on the pooled training rows."""

    def __init__(self, parts: list[TabularDataModuleBase], feature_spec: FeatureSpec, batch_size: int) -> None:
        super().__init__(batch_size)
        self.frames = {s: pd.concat([p.frames[s] for p in parts], ignore_index=True) for s in SPLITS}
        self.spec = feature_spec.fit(self.frames["train"])
        self._build_datasets()


def fit_with_selection(cfg: DictConfig, datamodule: TabularDataModuleBase, epochs: int, seed: int) -> Any:
    """`epochs` single-epoch local steps from a seeded initialisation; the state with the best val log loss."""
    pl.seed_everything(seed, workers=True)
    net = build_net(OmegaConf.to_container(cfg.model.net, resolve=True), datamodule.spec)
    best: tuple[float, dict[str, np.ndarray]] | None = None
    for epoch in range(epochs):
        net = train_locally(cfg.task.module, net, datamodule, 1, 0.0, seed * 1000 + epoch)
        loss = split_metrics(net, datamodule.spec, datamodule.frames["val"])["log_loss"]
        if loss is not None and (best is None or loss < best[0]):
            best = (loss, shared_state(net))
    if best is not None:
        load_shared_state(net, best[1])
    return net.eval()


def arm_overrides(arm: str, mu: float, clip_norm: float) -> list[str]:
    """The federated config of one arm name: `<fedavg|fedprox>[+secagg][+dp<noise multiplier>]`, e.g.
    `fedavg+secagg` or `fedavg+secagg+dp0.5` (DP clips at `clip_norm`)."""
    algorithm, *options = arm.split("+")
    out = [f"federated={algorithm}", *([f"federated.mu={mu}"] if algorithm == "fedprox" else [])]
    for option in options:
        if option == "secagg":
            out.append("federated.secure_aggregation=true")
        elif option.startswith("dp"):
            out += [f"federated.dp.noise_multiplier={float(option[2:])}", f"federated.dp.clip_norm={clip_norm}"]
        else:
            raise ValueError(f"arm {arm!r}: unknown option {option!r} (secagg, dp<sigma>)")
    return out


def run_seed(
    seed: int,
    clients: int,
    n_opportunities: int,
    rounds: int,
    algorithms: list[str],
    mu: float,
    work: Path,
    clip_norm: float = 0.1,
) -> list[dict[str, Any]]:
    """All arms for one seed (one draw of the organisations' CRMs and one training seed)."""
    overrides = [
        f"seed={seed}",
        f"federated.clients={clients}",
        f"federated.rounds={rounds}",
        f"data.source.n_opportunities={n_opportunities}",
        f"paths.root_dir={work}",
    ]
    cfg = compose_config(overrides)
    profiles = profiles_from_config(OmegaConf.to_container(cfg.federated.organisations, resolve=True), clients)
    parts = [organisation_datamodule(cfg, p, i) for i, p in enumerate(profiles)]
    for part in parts:
        part.setup("fit")
    rows: list[dict[str, Any]] = []

    def record(arm: str, org: str, metrics: dict[str, Any]) -> None:
        rows.append({"seed": seed, "arm": arm, "organisation": org, **{k: metrics.get(k) for k in METRIC_KEYS}})

    pooled = PooledDataModule(parts, parts[0].feature_spec, int(cfg.data.batch_size))
    central = fit_with_selection(cfg, pooled, rounds, seed)
    for profile, part in zip(profiles, parts, strict=True):
        record("centralised", profile.name, split_metrics(central, pooled.spec, part.frames["test"]))
        local = fit_with_selection(cfg, part, rounds, seed)
        record("local_only", profile.name, split_metrics(local, part.spec, part.frames["test"]))
    for algorithm in algorithms:
        arm_cfg = compose_config([*arm_overrides(algorithm, mu, clip_norm), *overrides])
        result = train_federated(arm_cfg, work / f"seed{seed}_{algorithm.replace('+', '_')}")
        per_org = result["metrics"]["per_organisation"]
        privacy = result["extra"].get("privacy") or {}
        for profile, part in zip(profiles, parts, strict=True):
            test = per_org[profile.name]["test"]
            check_same_rows(profile.name, test, part.frames["test"])
            record(algorithm, profile.name, test)
            rows[-1]["epsilon"] = privacy.get("epsilon")
            rows[-1]["seconds"] = result["seconds"]["total"]
        log.info("federated bench seed %d %s: %s %s", seed, algorithm, result["metrics"]["model"], privacy)
    sizes = {p.name: len(part.frames["train"]) for p, part in zip(profiles, parts, strict=True)}
    for row in rows:
        row["train_rows"] = sizes[row["organisation"]]
    return rows


def check_same_rows(org: str, client_test: dict[str, Any], frame: pd.DataFrame) -> None:
    """The client's test split and the bench's rebuild of it hold the same rows (count and positives)."""
    mine = (len(frame), int(frame["label"].sum()))
    theirs = (int(client_test["n"]), int(client_test["positives"]))
    if mine != theirs:
        raise RuntimeError(f"{org}: client test split {theirs} differs from the bench's rebuild {mine}")
