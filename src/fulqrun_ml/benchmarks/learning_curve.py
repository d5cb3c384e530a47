"""Deal-win learning curve: is the gap to the oracle a lack of data or a lack of information?

On the default simulator (6,000 deals) every model stops near 0.93 x the oracle AUC. Two explanations predict
different curves: if it is data, AUC keeps climbing as the same CRM story is observed on more deals; if it is
information the CRM never records, AUC flattens below the oracle however many deals we add. So:

1. One large simulated CRM (the sharded simulator, reps and companies scaled with the deals, so each rep has
   the same history as in the default CRM) is built into deal-win snapshots + features (DuckDB), and split by
   time exactly like the default data config (train / val / test periods, label-time embargo).
2. The test split is ONE fixed holdout. Training sets are nested random subsets of the CRM's deals: a CRM of
   N deals' worth takes the train (and val, for early stopping) rows of the first N deals of one fixed
   permutation, so every deal's snapshots go together and each size contains the previous one.
3. Per size: logistic regression, LightGBM (tuned) and the default MLP (trained by `train()`, see
   learning_curve_models.py), scored on the holdout against the oracle on the same rows.
4. Ceilings on the full training split: the oracle itself, and logistic regressions that are *given* latent
   truth (the deal's quality z, the non-z part of the true logit = rep skill + company + value effects) - they
   say which unobserved quantity the gap is made of. They read the simulator's latent truth on purpose and are
   never features of a real model.

The frame logic is pure (frames in, numbers out) so a test can run it on a tiny CRM in seconds. The command
line is learning_curve_cli.py; the plot and the Markdown are learning_curve_report.py.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.benchmarks.learning_curve_models import (
    MODELS,
    MLPSettings,
    ceilings,
    fit_models,
)
from fulqrun_ml.benchmarks.learning_curve_report import extrapolate
from fulqrun_ml.data.simulator import oracle_win_probability
from fulqrun_ml.data.simulator_scale import iter_latent, table_files
from fulqrun_ml.data.snapshots import time_split
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.tasks.metrics import binary_report

TARGET_RATIO = 0.97  # issue 4's acceptance: deal-win AUC >= 0.97 x oracle AUC
ORACLE = "oracle_probability"
# The simulator's weight of the deal's latent quality z in the true win logit (simulator.py, story point 3).
# Only used to split the true logit into "z" and "everything else" for the ceiling models.
Z_LOGIT_WEIGHT = 1.3


class LearningCurveError(FulqrunMLError, ValueError):
    """A learning-curve request that cannot be run (bad sizes or models, missing columns, empty splits)."""


@dataclass
class LearningCurveConfig:
    """What one run measures. `sizes` are in deals of the CRM ("a CRM of N deals' worth"), at most
    `crm_opportunities`; the MLP is skipped above `mlp_max_opportunities` (recorded, never silently)."""

    sizes: tuple[int, ...]
    crm_opportunities: int
    seed: int = 7
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    models: tuple[str, ...] = MODELS
    mlp_max_opportunities: int | None = None
    mlp: MLPSettings = field(default_factory=MLPSettings)


def validate_sizes(sizes: Iterable[int], crm_opportunities: int) -> tuple[int, ...]:
    """Strictly increasing positive integer sizes no larger than the CRM: a learning curve over anything else
    (repeats, a size the CRM cannot supply, zero) would silently measure something different."""
    raw = list(sizes)
    try:
        values = [int(s) for s in raw]
    except (TypeError, ValueError) as exc:
        raise LearningCurveError(f"sizes: expected integers, got {raw!r}") from exc
    if any(isinstance(s, bool) or v != s for s, v in zip(raw, values, strict=True)):
        raise LearningCurveError(f"sizes: expected whole numbers of deals, got {raw}")
    if not values:
        raise LearningCurveError("sizes: at least one training size is needed")
    if any(v < 1 for v in values):
        raise LearningCurveError(f"sizes: every size must be a positive number of deals, got {values}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise LearningCurveError(f"sizes: must be strictly increasing (nested subsets), got {values}")
    if values[-1] > crm_opportunities:
        raise LearningCurveError(
            f"sizes: {values[-1]} deals exceed the simulated CRM's {crm_opportunities} opportunities"
        )
    return tuple(values)


def attach_truth(frame: pd.DataFrame, latent: pd.DataFrame) -> pd.DataFrame:
    """Adds the oracle probability and the latent columns the ceilings read, per deal-win row.

    `latent_quality` is the deal's z; `latent_rest_logit` is the true win logit minus 1.3 z, i.e. the rep's
    skill plus the company and value effects - the part of the truth the CRM sees only through the rep's
    noisy win rate."""
    for column in ("opportunity_id", "stage_index"):
        if column not in frame.columns:
            raise LearningCurveError(f"deal-win frame: missing column {column!r}")
    truth = latent.set_index("opportunity_id")[["true_win_probability", "latent_quality"]]
    truth = truth.reindex(frame["opportunity_id"])
    if truth["true_win_probability"].isna().any():
        missing = int(truth["true_win_probability"].isna().sum())
        raise LearningCurveError(f"latent truth: no true_win_probability for {missing} deal-win rows")
    p = truth["true_win_probability"].to_numpy(dtype=np.float64)
    z = truth["latent_quality"].to_numpy(dtype=np.float64)
    return frame.assign(
        **{
            ORACLE: oracle_win_probability(p, frame["stage_index"].to_numpy()),
            "latent_quality": z,
            "latent_rest_logit": np.log(p / (1.0 - p)) - Z_LOGIT_WEIGHT * z,
        }
    )


def attach_meddpicc(frame: pd.DataFrame, opportunities: pd.DataFrame) -> pd.DataFrame:
    """The deal's stored MEDDPICC score (share of the 8 fields filled) as `meddpicc_score`.

    Not a feature: the CRM keeps no history of it, so a real export holds only the final value (leakage). The
    simulator draws it once at creation from z, so *here* it is what a point-in-time MEDDPICC history would
    give - the diagnostic asks how much recording that history would be worth."""
    score = opportunities.set_index("id")["meddpicc_score"].reindex(frame["opportunity_id"])
    if score.isna().any():
        raise LearningCurveError(f"opportunities: no meddpicc_score for {int(score.isna().sum())} deal-win rows")
    return frame.assign(meddpicc_score=score.to_numpy(dtype=np.float64))


def load_deal_win(
    build_dir: str | Path, crm_dir: str | Path, as_of_dates: Sequence[pd.Timestamp], config: LearningCurveConfig
) -> pd.DataFrame:
    """deal_win.parquet of a `build_crm_datasets` output with the latent truth and each row's time split
    (train / val / test / embargoed, `snapshots.time_split` on the build's own as_of grid)."""
    frame = pd.read_parquet(Path(build_dir) / "deal_win.parquet")
    latent = pd.concat(list(iter_latent(crm_dir)), ignore_index=True)
    frame = attach_truth(frame, latent)
    opportunities = pd.concat(
        [pd.read_parquet(f, columns=["id", "meddpicc_score"]) for f in table_files(crm_dir, "opportunities")],
        ignore_index=True,
    )
    frame = attach_meddpicc(frame, opportunities)
    split = time_split(list(as_of_dates), config.val_fraction, config.test_fraction)
    return frame.assign(split=split.assign(frame).to_numpy())


def nested_subsets(opportunity_ids: Sequence[str], sizes: Sequence[int], seed: int) -> dict[int, np.ndarray]:
    """The first `size` deals of one seeded permutation of all the CRM's deals, per size: nested by
    construction and grouped by deal (a deal is in or out with all its snapshots)."""
    ids = np.unique(np.asarray(opportunity_ids, dtype=object))
    if len(ids) != len(opportunity_ids):
        raise LearningCurveError("opportunity_ids: duplicate ids (pass each deal of the CRM once)")
    sizes = validate_sizes(sizes, len(ids))
    order = ids[np.random.default_rng(seed).permutation(len(ids))]
    return {size: order[:size] for size in sizes}


def training_rows(frames: dict[str, pd.DataFrame], deals: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and val rows of the chosen deals (every snapshot of a chosen deal, none of the others).
    Validation shrinks with the training set, as it would in a CRM of that size; the test split never does."""
    chosen = set(deals)
    train = frames["train"][frames["train"]["opportunity_id"].isin(chosen)].reset_index(drop=True)
    val = frames["val"][frames["val"]["opportunity_id"].isin(chosen)].reset_index(drop=True)
    return train, val


def holdout_hash(frame: pd.DataFrame) -> str:
    """Content hash of the holdout's (deal, as_of, label) rows, so a report shows every size scored the
    very same rows."""
    keys = frame[["opportunity_id", "as_of", "label"]]
    return hashlib.sha256(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes()).hexdigest()[:16]


def split_frames(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The train / val / test rows of a `load_deal_win` frame (embargoed rows dropped), each with both classes."""
    frames = {s: frame[frame["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    for name, part in frames.items():
        if part.empty or part["label"].nunique() < 2:
            raise LearningCurveError(f"split {name!r}: needs rows of both classes, has {len(part)} rows")
    return frames


def run_learning_curve(
    frame: pd.DataFrame,
    config: LearningCurveConfig,
    opportunity_ids: Sequence[str],
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """The learning curve and ceilings on a deal-win frame from `load_deal_win` (columns: features, label,
    split, oracle_probability, latent columns). `opportunity_ids` are all the CRM's deals (the permutation
    the subsets are prefixes of), not only those with snapshots."""
    if ORACLE not in frame.columns or "split" not in frame.columns:
        raise LearningCurveError("frame: needs 'split' and 'oracle_probability' columns (use load_deal_win)")
    sizes = validate_sizes(config.sizes, config.crm_opportunities)
    unknown = [m for m in config.models if m not in MODELS]
    if unknown:
        raise LearningCurveError(f"models: unknown model(s) {unknown}; choose from {MODELS}")
    if len(opportunity_ids) != config.crm_opportunities:
        raise LearningCurveError(
            f"crm_opportunities: config says {config.crm_opportunities}, the CRM has {len(opportunity_ids)} deals"
        )
    frames = split_frames(frame)
    test = frames["test"]
    labels = test["label"].to_numpy()
    oracle = binary_report(test[ORACLE].to_numpy(), labels)
    oracle_auc = oracle["auc"]
    subsets = nested_subsets(opportunity_ids, sizes, config.seed)
    curve = []
    for size in sizes:
        train, val = training_rows(frames, subsets[size])
        if train["label"].nunique() < 2 or val["label"].nunique() < 2:
            raise LearningCurveError(f"sizes: {size} deals leave a train or val split with a single class")
        limit = config.mlp_max_opportunities
        skipped = f"above mlp_max_opportunities={limit}" if limit is not None and size > limit else None
        t0 = time.perf_counter()
        split = {"train": train, "val": val, "test": test}
        models = fit_models(split, config.models, config.seed, oracle_auc, config.mlp, skipped)
        entry = {
            "opportunities": size,
            "train_opportunities": int(train["opportunity_id"].nunique()),
            "train_rows": len(train),
            "val_rows": len(val),
            "holdout_rows": len(test),
            "holdout_hash": holdout_hash(test),
            "seconds": round(time.perf_counter() - t0, 2),
            "models": models,
        }
        curve.append(entry)
        log(f"size {size}: {_summary(entry)}")
    ceiling = ceilings(frames, oracle_auc)
    log(f"ceilings: { {k: v['auc'] for k, v in ceiling.items()} }")
    return {
        "config": {**asdict(config), "sizes": list(sizes)},
        "target_ratio": TARGET_RATIO,
        "split_rows": {s: int((frame["split"] == s).sum()) for s in ("train", "val", "test", "embargoed")},
        "holdout": {
            "rows": len(test),
            "opportunities": int(test["opportunity_id"].nunique()),
            "positive_rate": round(float(labels.mean()), 5),
            "hash": holdout_hash(test),
            "as_of_first": str(test["as_of"].min()),
            "as_of_last": str(test["as_of"].max()),
        },
        "oracle": {"auc": round(oracle_auc, 5), "log_loss": round(oracle["log_loss"], 5)},
        "target_auc": round(TARGET_RATIO * oracle_auc, 5),
        "curve": curve,
        "ceilings": ceiling,
        "positive_rate": {split: round(float(frames[split]["label"].mean()), 5) for split in ("train", "val", "test")},
        "extrapolation": extrapolate(curve),
    }


def _summary(entry: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {m['auc']:.4f}" if "auc" in m else f"{name} skipped" for name, m in entry["models"].items()
    )
