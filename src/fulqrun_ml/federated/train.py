"""`fulqrun-ml federated train [overrides]`: a federated run whose directory `fulqrun-ml export` publishes as usual.

    fulqrun-ml federated train federated=fedavg federated.rounds=20 federated.clients=4
    fulqrun-ml federated train federated=fedprox federated.mu=0.01 model=mlp
    fulqrun-ml export --run-dir <printed run dir>

The overrides compose the same `train` config as `fulqrun-ml train` (task, model, data, seed), plus the
`federated` config group (configs/federated/: fedavg, fedprox). The run directory holds what the tabular
pipeline's exporter reads: net_state.pt, net_config.json, the federated feature_spec.json, metrics.json and
run_info.json, whose record names the tabular pipeline, so export, the registry, the model card and serving treat
the model like any other deal-win version. The lineage's `extra.federated` says how it was made (algorithm,
rounds, clients, mu, the selected round, refused updates and dropped clients).

What the server never had: rows. Export's parity check needs input rows, so `holdout.parquet` here is a
*synthetic parity probe* drawn from the federated FeatureSpec's statistics (normal draws in the transformed space,
every category and one unseen). It has no labels, so `export --optimize/--quantize`, which gate on holdout AUC,
do not apply to a federated run. `metrics.json`'s `model` is the test-row-weighted mean of the organisations' own
holdout metrics, and `per_organisation` keeps each one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.data.snapshot_files import write_snapshot
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.federated.aggregate import load_shared_state
from fulqrun_ml.federated.federation import FederatedSettings, FederationResult, run_federation, weighted
from fulqrun_ml.federated.local import build_net
from fulqrun_ml.federated.organisations import profiles_from_config
from fulqrun_ml.project import CONFIG_DIR, git_commit
from fulqrun_ml.registry.run_record import RunRecord

TABULAR_PIPELINE = "fulqrun_ml.pipelines.tabular.TabularPipeline"
PROBE_ROWS = 256
METRICS = ("auc", "log_loss", "brier", "oracle_auc", "oracle_log_loss")


def compose_config(overrides: list[str]) -> DictConfig:
    """The train config plus the `federated` group (fedavg unless an override picks one)."""
    overrides = ["+" + o if o.startswith("federated=") else o for o in overrides]
    if not any(o.startswith("+federated=") for o in overrides):
        overrides = ["+federated=fedavg", *overrides]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=["logger=none", *overrides])


def train_federated(cfg: DictConfig, out: Path | None = None, **federation: Any) -> dict[str, Any]:
    """Run the federation and write a finished run directory (staged, then renamed into place); `federation`
    passes `tap`/`launch` on to `run_federation`."""
    fed = cfg.federated
    settings = FederatedSettings.from_config(fed)
    profiles = profiles_from_config(OmegaConf.to_container(fed.organisations, resolve=True), int(fed.clients))
    if out is None:
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        out = Path(cfg.paths.log_dir) / "federated" / str(cfg.task.name) / f"{stamp}_{settings.algorithm}"
    if out.exists():
        raise FulqrunMLError(f"run directory {out} exists already")
    cfg = cfg.copy()
    cfg.paths.output_dir = str(out)  # not Hydra's run dir: the config is resolved for the clients
    t0 = time.perf_counter()
    result = run_federation(cfg, profiles, settings, **federation)
    seconds = {"total": round(time.perf_counter() - t0, 3)}
    staging = out.parent / f".{out.name}.staging"
    staging.mkdir(parents=True)
    try:
        record = write_run(cfg, result, staging, out, seconds)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**record.to_dict(), "metrics": json.loads((out / "metrics.json").read_text())}


def write_run(cfg: DictConfig, result: FederationResult, staging: Path, out: Path, seconds: dict) -> RunRecord:
    """The files export reads, and the run record (last) naming the tabular pipeline and the federation."""
    net = build_net(result.net_config, result.spec)
    load_shared_state(net, result.state)
    torch.save(net.state_dict(), staging / "net_state.pt")
    (staging / "net_config.json").write_text(json.dumps(result.net_config, indent=2))
    result.spec.save(staging / "feature_spec.json")
    metrics = federated_metrics(result.metrics)
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_snapshot(parity_probe(result.spec, int(cfg.seed)), staging / "holdout.parquet")  # sealed when at rest is on
    settings = result.settings
    federated = {
        "algorithm": settings.algorithm,
        "rounds": settings.rounds,
        "local_epochs": settings.local_epochs,
        "mu": settings.mu,
        "clients": result.clients,
        "train_rows": result.train_rows,
        "selected_round": result.chosen_round,
        "history": result.history,
        "events": result.events,
        "secure_aggregation": settings.secure_aggregation,
        "dp": dataclasses.asdict(settings.dp) if settings.dp.enabled else None,
        "holdout_parquet": "synthetic parity probe from the federated FeatureSpec; no organisation's rows",
    }
    record = RunRecord(
        pipeline=TABULAR_PIPELINE,
        task=str(cfg.task.name),
        kind="binary",
        model=str(cfg.model.name),
        run_dir=str(out),
        net_config=result.net_config,
        config=OmegaConf.to_container(cfg, resolve=True),
        data_hash=result.statistics_hash,  # of the aggregated statistics: the server never held the rows
        git_commit=git_commit(),
        seed=int(cfg.seed),
        epochs=settings.rounds * settings.local_epochs,
        best_checkpoint="",
        sizes={
            "train_rows": sum(result.train_rows.values()),
            **{f"train_rows/{k}": v for k, v in result.train_rows.items()},
        },
        data_window={},
        seconds=seconds,
        extra={"federated": federated, **({"privacy": result.privacy} if result.privacy else {})},
    )
    record.save(staging)
    return record


def federated_metrics(per_org: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`model` (and `oracle`) as test-row-weighted means over organisations, plus each organisation's own."""
    model = {name: weighted(per_org, "test", name) for name in ("auc", "log_loss", "brier")}
    oracle = {name: weighted(per_org, "test", f"oracle_{name}") for name in ("auc", "log_loss")}
    model["n"] = sum(m["test"]["n"] for m in per_org.values())
    return {
        "model": model,
        "oracle": oracle,
        "aggregation": "test-row-weighted mean of each organisation's holdout metric",
        "per_organisation": per_org,
    }


def parity_probe(spec: FittedFeatureSpec, seed: int, rows: int = PROBE_ROWS) -> pd.DataFrame:
    """Inputs for export's parity check drawn from the spec's own statistics: no organisation's rows."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for feat in spec.spec.numeric:
        z = rng.normal(spec.means[feat.name], spec.stds[feat.name], rows)
        columns[feat.name] = np.expm1(np.maximum(z, 0.0)) if feat.log1p else z
    for feat in spec.spec.categorical:
        vocabulary = [*spec.vocabularies[feat.name], "__unseen__"]
        columns[feat.name] = [vocabulary[i % len(vocabulary)] for i in rng.permutation(rows)]
    return pd.DataFrame(columns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fulqrun-ml federated", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["train"])
    _, overrides = parser.parse_known_args(argv)
    cfg = compose_config(overrides)
    result = train_federated(cfg)
    fed = result["extra"]["federated"]
    model = result["metrics"]["model"]
    print(
        f"run dir: {result['run_dir']}\n{fed['algorithm']} over {len(fed['clients'])} organisations, "
        f"{fed['rounds']} rounds (selected round {fed['selected_round']}): holdout AUC {model['auc']:.4f} "
        f"(test-row-weighted over organisations), {len(fed['events'])} refused/dropped events\n"
        f"next: fulqrun-ml export --run-dir {result['run_dir']}"
    )
    privacy = result["extra"].get("privacy")
    if fed["secure_aggregation"] or privacy:
        masked = "pairwise-masked updates (the server saw only their sum)" if fed["secure_aggregation"] else ""
        dp = f"client-level DP: ε = {privacy['epsilon']:.3g} at δ = {privacy['delta']:.3g}" if privacy else ""
        print("; ".join(x for x in (masked, dp) if x))
    return 0
