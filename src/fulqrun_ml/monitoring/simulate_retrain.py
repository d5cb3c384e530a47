"""Retraining triggered by an alert in `fulqrun-ml monitor simulate`, and what it recovered.

On a scenario's first alert the project's own refresh (`monitoring.refresh.refresh`: warm start from
`deal_win@production`, publish with the `candidate` alias, gate against production on a fresh holdout) runs on
the scenario's CRM as it stood at the alert (`features.recompute_audit.truncate_crm`: only what was known then).
Each scenario refreshes a copy of the seed's registry, so one scenario's promotion never becomes the next
one's production. The candidate is loaded into the running Triton next to production as `<name>_candidate`
(explicit model control) and from then on scores the same requests in shadow; production keeps serving, so
both are judged on identical rows.

Why the recovered accuracy can only be small within a replay of weeks: the training data are snapshots whose
label horizon (180 days) has elapsed (`data.snapshots.snapshot_dates`), so a refresh run weeks after the onset
learns nothing from post-onset outcomes; it sees only older, pre-onset deals plus refitted encoders.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.features.recompute_audit import truncate_crm
from fulqrun_ml.monitoring.performance import PROB_CLIP, rank_auc
from fulqrun_ml.monitoring.refresh import refresh
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.control import ModelController
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.repository import TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer

log = logging.getLogger(__name__)
CANDIDATE_SUFFIX = "_candidate"


@dataclass
class Candidate:
    """A refreshed model served next to production: its client, and how the refresh went."""

    client: TritonPredictionClient
    controller: ModelController
    version: ModelVersion
    triton_name: str
    refresh: dict[str, Any]


def refresh_on_alert(
    tables: CRMTables,
    at: pd.Timestamp,
    seed_registry: Path,
    name: str,
    work: Path,
    warm_epochs: int,
    train_overrides: list[str],
) -> tuple[ModelVersion, dict[str, Any]]:
    """Warm-start refresh on the CRM cut at `at`, in a copy of the seed's registry under `work`.

    Returns the candidate version and the refresh's JSON-ready result (decision, gate metrics, timing)."""
    started = time.perf_counter()
    registry = work / "registry"
    shutil.copytree(seed_registry / name, registry / name)
    crm_dir = write_crm_directory(truncate_crm(tables, at), work / "crm_at_alert")
    result = refresh(
        registry,
        name,
        "deal_win",
        work / "refresh",
        overrides=["data=crm_parquet", f"data.source.path={crm_dir}", *train_overrides],
        warm_overrides=(f"trainer.max_epochs={warm_epochs}",),
    )
    if result.candidate is None:  # only a registry without production bootstraps; ours always has one
        raise RuntimeError(f"refresh of {name} published no candidate: {result.decision}")
    candidate = get_version(registry, name, result.candidate)
    summary = {
        "at": str(at),
        "decision": result.decision,
        "warm_start": result.warm_start,
        "candidate_version": result.candidate,
        "holdout_rows": result.holdout_rows,
        "gate_metrics": result.metrics,
        "reasons": result.reasons,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info("refresh at %s: %s (%s)", at.date(), result.decision, result.warm_start)
    return candidate, summary


def serve_candidate(
    server: TritonServer, repository: Path, candidate: ModelVersion, serving: DictConfig, summary: dict[str, Any]
) -> Candidate:
    """Load the candidate into the running Triton as `<name>_candidate` and return a client for it."""
    config = replace(cpu_serving_configs(candidate, serving)[0], name=candidate.name + CANDIDATE_SUFFIX)
    controller = ModelController(server.http_url, TritonRepositoryBuilder(repository))
    try:
        controller.deploy(candidate, config)
    except Exception:
        controller.close()
        raise
    client = TritonPredictionClient(server.grpc_url, config.name, protocol="grpc")
    return Candidate(client, controller, candidate, config.name, summary)


def retire_candidate(candidate: Candidate) -> None:
    """Unload the candidate, so the next scenario's candidate loads fresh under the same name."""
    candidate.client.close()
    try:
        candidate.controller.client.unload_model(candidate.triton_name)
        deadline = time.monotonic() + 60.0
        while candidate.controller.client.is_model_ready(candidate.triton_name) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        candidate.controller.close()


def binary_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """AUC (None with one class) and log loss of probabilities against 0/1 labels."""
    p = np.clip(np.asarray(probs, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP)
    y = np.asarray(labels, dtype=np.float64)
    auc = float(rank_auc(p, y)) if 0 < y.sum() < y.size else None
    log_loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else None
    return {"auc": auc, "log_loss": log_loss}


def recovered_accuracy(scored: pd.DataFrame) -> dict[str, Any] | None:
    """Production (the no-retrain baseline) vs candidate vs the simulator's truth, on the same rows: requests
    about post-onset deals scored after the refresh, with their final outcomes (`label`), the simulator's true
    win probability at creation (`true_probability`) and the oracle's posterior given the stage then
    (`oracle_probability`, the ceiling). None when there is nothing to score."""
    rows = scored.dropna(subset=["candidate_probability", "label"])
    if rows.empty:
        return None
    labels = rows["label"].to_numpy()
    production = binary_scores(rows["probability"].to_numpy(), labels)
    candidate = binary_scores(rows["candidate_probability"].to_numpy(), labels)
    truth = binary_scores(rows["true_probability"].to_numpy(), labels)
    ceiling = binary_scores(rows["oracle_probability"].to_numpy(), labels)

    def gap(metric: str, lower_is_better: bool = False) -> float | None:
        a, b = candidate[metric], production[metric]
        if a is None or b is None:
            return None
        return float(b - a) if lower_is_better else float(a - b)

    return {
        "rows": len(rows),
        "deals": int(rows["entity_id"].nunique()),
        "win_rate": float(labels.mean()),
        "production": production,
        "candidate": candidate,
        "true_probability": truth,  # the simulator's win probability at creation
        "oracle": ceiling,  # its Bayes posterior given the stage at scoring: the ceiling
        "auc_recovered": gap("auc"),  # candidate AUC - production AUC
        "log_loss_recovered": gap("log_loss", lower_is_better=True),  # production log loss - candidate's
    }
