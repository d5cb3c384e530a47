"""The daily refresh: warm-start on the newest data, publish a candidate, promote it only if it is at least as good
as production on the same fresh holdout, and roll production back when it regresses live.

Why gates against production on the *same* rows: a candidate's own metrics move with the data window (a
harder quarter lowers every model's AUC), so "AUC above 0.7" would block good candidates in a hard quarter
and pass bad ones in an easy one. Scoring production's served graph and the candidate's on the candidate
run's holdout (the newest labelled period, which neither trained on) compares models, not windows.

One refresh, in order:
1. **Live check.** If production was promoted by an earlier refresh, score it and the version it replaced on
   the newest labelled rows. If it is worse by more than `rollback_auc_drop`, roll back (audit-logged) and alert.
2. **Warm start.** `train()` with `init_from=<name>@production` on the newest extract, a few epochs.
3. **Publish** the run as a new version with the `candidate` alias.
4. **Gates** on the fresh holdout: AUC not below production's by more than `max_auc_drop`, ECE not above
   production's by more than `max_ece_rise`, and the fairness gate of `models promote` (the registry applies it).
   Pass: promote to production. Fail: keep production and alert with the failing gate and numbers.

Run it from cron or a systemd timer (docs/refresh.md): `fulqrun-ml monitor refresh --task deal_win`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.errors import FulqrunMLError, RegistryError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.aliases import promote, rollback
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.train import train
from fulqrun_ml.training.warm_start import WarmStartError

log = logging.getLogger(__name__)
ACTOR = "refresh-job"
Alert = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class RefreshGates:
    """Tolerances of the refresh's decisions (configs/monitoring/refresh.yaml)."""

    max_auc_drop: float = 0.005
    max_ece_rise: float = 0.01
    rollback_auc_drop: float = 0.02
    min_holdout_rows: int = 100


@dataclass
class RefreshResult:
    """What one refresh did and why, with the numbers its decisions rest on."""

    decision: str  # bootstrapped | promoted | kept | rolled_back+promoted | rolled_back+kept
    production_before: int | None
    production_after: int | None
    candidate: int | None = None
    holdout_rows: int = 0
    holdout_path: str | None = None  # the fresh holdout the gates scored (the candidate run's holdout.parquet)
    warm_start: str | None = None  # what the candidate started from, or why it could not warm-start
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_version(version: ModelVersion, holdout: pd.DataFrame) -> dict[str, float]:
    """AUC, log loss, Brier and ECE of a version's served graph (calibration included) on holdout rows."""
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    probs = onnx_probabilities(version.path / "model.onnx", spec, holdout)
    report = binary_report(probs, holdout["label"].to_numpy())
    return {key: float(report[key]) for key in ("auc", "log_loss", "brier", "ece") if key in report}


def gate_reasons(candidate: dict[str, float], production: dict[str, float], gates: RefreshGates) -> list[str]:
    """Why a candidate may not replace production (empty: it may)."""
    reasons = []
    cand, prod = candidate, production
    if cand["auc"] < prod["auc"] - gates.max_auc_drop:
        reasons.append(f"auc {cand['auc']:.4f} is below production's {prod['auc']:.4f} by > {gates.max_auc_drop}")
    if cand["ece"] > prod["ece"] + gates.max_ece_rise:
        reasons.append(f"ece {cand['ece']:.4f} is above production's {prod['ece']:.4f} by > {gates.max_ece_rise}")
    return reasons


def _train_and_publish(
    models_dir: Path, name: str, task: str, work_dir: Path, overrides: Sequence[str], init_from: str | None
) -> tuple[ModelVersion, Path]:
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 1_000_000:06d}"
    cfg = compose_config(
        "train",
        [
            f"task={task}",
            f"paths.output_dir={work_dir / stamp}",
            f"paths.models_dir={models_dir}",
            *([f"init_from={init_from}"] if init_from else []),
            *overrides,
        ],
    )
    result = train(cfg)
    run_dir = Path(result["run_dir"])
    version, _ = export_run(run_dir, models_dir, name=name)
    return version, run_dir / "holdout.parquet"


def refresh(
    models_dir: Path,
    name: str,
    task: str,
    work_dir: Path,
    overrides: Sequence[str] = (),
    warm_overrides: Sequence[str] = ("trainer.max_epochs=3",),
    gates: RefreshGates | None = None,
    alert: Alert | None = None,
) -> RefreshResult:
    """One refresh of `name` (see the module docstring). `overrides` pick the newest data (e.g. the data
    config and its path); `warm_overrides` shorten the warm start. Never raises for a failed gate: it keeps
    production and alerts. Raises FulqrunMLError when the data or registry is unusable."""
    gates = gates or RefreshGates()
    started = time.perf_counter()
    models_dir, work_dir = Path(models_dir), Path(work_dir)
    state = read_alias_state(models_dir, name) if (models_dir / name).exists() else None
    production = state.production if state else None
    if production is None:
        version, _ = _train_and_publish(models_dir, name, task, work_dir, overrides, None)
        promote(models_dir, name, version.version, actor=ACTOR)
        return RefreshResult("bootstrapped", None, version.version, version.version, seconds=_since(started))

    warm_note = None
    try:
        candidate, holdout_path = _train_and_publish(
            models_dir, name, task, work_dir, [*overrides, *warm_overrides], f"{name}@{production}"
        )
    except WarmStartError as incompatible:
        # The newest window changed the inputs (a new category, a vanished one): a warm start would mis-map
        # embeddings, so this refresh retrains from scratch and says so.
        warm_note = f"retrained from scratch: {incompatible}"
        candidate, holdout_path = _train_and_publish(models_dir, name, task, work_dir, overrides, None)
    promote(models_dir, name, candidate.version, alias="candidate", actor=ACTOR)
    holdout = read_snapshot(holdout_path)
    result = RefreshResult("kept", production, production, candidate.version, len(holdout), str(holdout_path))
    result.warm_start = warm_note or f"init_from={name}@{production}"
    if len(holdout) < gates.min_holdout_rows or holdout["label"].nunique() < 2:
        raise FulqrunMLError(
            f"holdout: {len(holdout)} rows with labels {sorted(holdout['label'].unique())}; a refresh needs at least "
            f"{gates.min_holdout_rows} rows of both classes to compare models"
        )
    result.metrics["production"] = score_version(get_version(models_dir, name, production), holdout)
    result.metrics["candidate"] = score_version(candidate, holdout)
    rolled_back = _live_check(models_dir, name, state.production_history, holdout, gates, result, alert)
    if rolled_back is not None:
        result.metrics["production"] = score_version(get_version(models_dir, name, rolled_back), holdout)
        result.production_before = result.production_after = rolled_back
    result.reasons += gate_reasons(result.metrics["candidate"], result.metrics["production"], gates)
    if not result.reasons:
        try:
            promote(models_dir, name, candidate.version, actor=ACTOR)
            result.production_after = candidate.version
        except RegistryError as refused:  # e.g. the registry's fairness gate
            result.reasons.append(f"registry refused the promotion: {refused}")
    result.decision = ("rolled_back+" if rolled_back is not None else "") + (
        "promoted" if result.production_after == candidate.version else "kept"
    )
    if result.decision.endswith("kept") and alert:
        alert("refresh_candidate_rejected", {"model": name, "candidate": candidate.version, "reasons": result.reasons})
    result.seconds = _since(started)
    log.info("refresh of %s: %s (%s)", name, result.decision, "; ".join(result.reasons) or "all gates passed")
    return result


def _live_check(
    models_dir: Path,
    name: str,
    history: Sequence[int],
    holdout: pd.DataFrame,
    gates: RefreshGates,
    result: RefreshResult,
    alert: Alert | None,
) -> int | None:
    """Roll back if the current production is worse than the one it replaced on the newest labelled rows."""
    if len(history) < 2:
        return None
    current, previous = history[-1], history[-2]
    before = score_version(get_version(models_dir, name, previous), holdout)
    now = result.metrics["production"]
    result.metrics["previous_production"] = before
    if now["auc"] >= before["auc"] - gates.rollback_auc_drop:
        return None
    rollback(models_dir, name, actor=ACTOR)
    why = (
        f"production v{current} auc {now['auc']:.4f} regressed below v{previous}'s {before['auc']:.4f} "
        f"by more than {gates.rollback_auc_drop}: rolled back"
    )
    result.reasons.append(why)
    if alert:
        alert("production_regressed", {"model": name, "version": current, "restored": previous, "why": why})
    return previous


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)
