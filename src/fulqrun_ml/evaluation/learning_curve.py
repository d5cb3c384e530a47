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
3. Per size: logistic regression, LightGBM (tuned) and the default MLP, scored on the holdout against the
   oracle on the same rows.
4. Ceilings on the full training split: the oracle itself, and logistic regressions that are *given* latent
   truth (the deal's quality z, the non-z part of the true logit = rep skill + company + value effects) - they
   say which unobserved quantity the gap is made of. They read the simulator's latent truth on purpose and are
   never features of a real model.

The frame logic is pure (frames in, numbers out) so a test can run it on a tiny CRM in seconds.
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
import torch
from scipy.optimize import curve_fit
from sklearn.metrics import roc_auc_score

from fulqrun_ml.data.simulator import oracle_win_probability
from fulqrun_ml.data.simulator_scale import iter_latent, table_files
from fulqrun_ml.data.snapshots import time_split
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS, fit_lightgbm
from fulqrun_ml.evaluation.logistic_baseline import fit_logistic
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, FittedFeatureSpec, NumericFeature
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.tasks.metrics import binary_report

TARGET_RATIO = 0.97  # issue 4's acceptance: deal-win AUC >= 0.97 x oracle AUC
MODELS = ("logistic", "lightgbm_tuned", "mlp")
ORACLE = "oracle_probability"
# The simulator's weight of the deal's latent quality z in the true win logit (simulator.py, story point 3).
# Only used to split the true logit into "z" and "everything else" for the ceiling models.
Z_LOGIT_WEIGHT = 1.3


class LearningCurveError(FulqrunMLError, ValueError):
    """A learning-curve request that cannot be run (bad sizes, missing columns, empty splits)."""


@dataclass(frozen=True)
class MLPSettings:
    """The default deal-win MLP (configs/model/mlp.yaml + configs/task/deal_win.yaml + callbacks): AdamW 1e-3,
    weight decay 0.01, batch 256, early stopping on validation AUC with patience 5, best epoch restored.
    `max_epochs` and `max_seconds` cap one fit so the whole benchmark fits its time budget."""

    hidden_dims: tuple[int, ...] = (128, 64)
    dropout: float = 0.3
    embedding_max_dim: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    max_epochs: int = 25
    patience: int = 5
    max_seconds: float = 120.0


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
    time_proxy_ablation: bool = True
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


def _arrays(spec: FittedFeatureSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    arrays = spec.encode(frame)
    arrays["target"] = frame["label"].to_numpy(dtype=np.float32)
    return arrays


def fit_mlp(
    train: dict[str, np.ndarray], val: dict[str, np.ndarray], cardinalities: list[int], settings: MLPSettings, seed: int
) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], dict[str, Any]]:
    """The default MLP in a plain torch loop (no Lightning: nothing to log or checkpoint, and it is several
    times lighter per step on two shared cores). Returns a predictor and what the fit did."""
    torch.manual_seed(seed)
    net = MLP(
        train["continuous"].shape[1], cardinalities, settings.hidden_dims, settings.dropout, settings.embedding_max_dim
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    x_cont, x_cat = torch.tensor(train["continuous"]), torch.tensor(train["categorical"])
    y = torch.tensor(train["target"])
    generator = torch.Generator().manual_seed(seed)

    def predict(arrays: dict[str, np.ndarray]) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            logits = net(torch.from_numpy(arrays["continuous"]), torch.from_numpy(arrays["categorical"]))
        return torch.sigmoid(logits[:, 0]).numpy().astype(np.float64)

    start = time.perf_counter()
    best_auc, best_state, best_epoch, epochs, stopped = -np.inf, None, 0, 0, "max_epochs"
    for epoch in range(settings.max_epochs):
        net.train()
        for batch in torch.randperm(len(y), generator=generator).split(settings.batch_size):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(x_cont[batch], x_cat[batch])[:, 0], y[batch]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epochs = epoch + 1
        auc = float(roc_auc_score(val["target"], predict(val)))
        if auc > best_auc:
            best_auc, best_epoch = auc, epochs
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if epochs - best_epoch >= settings.patience:
            stopped = "early_stopping"
            break
        if time.perf_counter() - start > settings.max_seconds:
            stopped = "time_cap"
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    info = {
        "fit_seconds": round(time.perf_counter() - start, 3),
        "epochs": epochs,
        "best_epoch": best_epoch,
        "stopped_by": stopped,
        "val_auc": round(best_auc, 5),
    }
    return predict, info


def _score(probs: np.ndarray, labels: np.ndarray, oracle_auc: float) -> dict[str, float]:
    report = binary_report(probs, labels)
    return {
        "auc": round(report["auc"], 5),
        "ratio_to_oracle": round(report["auc"] / oracle_auc, 5),
        "log_loss": round(report["log_loss"], 5),
        "brier": round(report["brier"], 5),
    }


def fit_models(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    config: LearningCurveConfig,
    oracle_auc: float,
    run_mlp: bool,
) -> dict[str, dict[str, Any]]:
    """Every requested model fitted on (train, val) with the FeatureSpec fitted on this train subset, and
    scored on `test`."""
    spec = DEAL_WIN_FEATURES.fit(train)
    arrays = {"train": _arrays(spec, train), "val": _arrays(spec, val), "test": _arrays(spec, test)}
    labels = arrays["test"]["target"]
    results: dict[str, dict[str, Any]] = {}
    for model in config.models:
        if model == "logistic":
            fit = fit_logistic(arrays["train"])
            results[model] = {
                **_score(fit.predict(arrays["test"]), labels, oracle_auc),
                "fit_seconds": round(fit.fit_seconds, 3),
            }
        elif model == "lightgbm_tuned":
            gbm = fit_lightgbm(arrays["train"], arrays["val"], LIGHTGBM_SETTINGS[model], config.seed)
            results[model] = {
                **_score(gbm.predict(arrays["test"]), labels, oracle_auc),
                "fit_seconds": round(gbm.fit_seconds, 3),
                "trees": int(gbm.model.best_iteration_ or gbm.model.n_estimators),
            }
        elif model == "mlp":
            if not run_mlp:
                results[model] = {"skipped": f"above mlp_max_opportunities={config.mlp_max_opportunities}"}
                continue
            predict, info = fit_mlp(arrays["train"], arrays["val"], spec.cardinalities, config.mlp, config.seed)
            results[model] = {**_score(predict(arrays["test"]), labels, oracle_auc), **info}
        else:
            raise LearningCurveError(f"models: unknown model {model!r}; choose from {MODELS}")
    return results


def split_frames(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frames = {s: frame[frame["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    for name, part in frames.items():
        if part.empty or part["label"].nunique() < 2:
            raise LearningCurveError(f"split {name!r}: needs rows of both classes, has {len(part)} rows")
    return frames


# Ceiling models: logistic regressions given latent truth (see the module docstring).
_Z = NumericFeature("latent_quality", "the deal's latent quality z (simulator truth)")
_REST = NumericFeature("latent_rest_logit", "true win logit minus 1.3 z: rep skill + company + value (truth)")
CEILING_SPECS: dict[str, FeatureSpec] = {
    # Only the truth the oracle reads (z, the rest of the logit) and the stage: should reach the oracle.
    "latent_truth_logistic": FeatureSpec(numeric=(_Z, _REST), categorical=(CategoricalFeature("stage", "stage"),)),
    "observed_plus_z_logistic": FeatureSpec(
        numeric=(*DEAL_WIN_FEATURES.numeric, _Z), categorical=DEAL_WIN_FEATURES.categorical
    ),
    "observed_plus_rest_logistic": FeatureSpec(
        numeric=(*DEAL_WIN_FEATURES.numeric, _REST), categorical=DEAL_WIN_FEATURES.categorical
    ),
    # Recorded by the CRM but unusable without history (see attach_meddpicc): what would a history be worth?
    "observed_plus_meddpicc_logistic": FeatureSpec(
        numeric=(*DEAL_WIN_FEATURES.numeric, NumericFeature("meddpicc_score", "final MEDDPICC score")),
        categorical=DEAL_WIN_FEATURES.categorical,
    ),
}
# `rep_closed_deals` counts the rep's closes since the CRM began, so it grows with calendar time: it tells a model
# *when* a snapshot is. The label-time embargo keeps, at the last training dates, only the deals that closed
# before validation began - mostly losses - so "late in time" looks like "loses" in training, and the test period
# (later than any training row) is scored low. The ablation refits without it on the full training split.
TIME_PROXY_FEATURES = ("rep_closed_deals",)
WITHOUT_TIME_PROXY = FeatureSpec(
    numeric=tuple(f for f in DEAL_WIN_FEATURES.numeric if f.name not in TIME_PROXY_FEATURES),
    categorical=DEAL_WIN_FEATURES.categorical,
)


def ceilings(frames: dict[str, pd.DataFrame], oracle_auc: float) -> dict[str, dict[str, Any]]:
    """Logistic regressions on the full training split given latent truth, scored on the holdout."""
    out = {}
    for name, spec in CEILING_SPECS.items():
        if any(column not in frames["train"].columns for column in spec.names):
            continue  # e.g. no MEDDPICC score in a frame not loaded by load_deal_win
        fitted = spec.fit(frames["train"])
        fit = fit_logistic(_arrays(fitted, frames["train"]))
        probs = fit.predict(_arrays(fitted, frames["test"]))
        out[name] = {
            **_score(probs, frames["test"]["label"].to_numpy(), oracle_auc),
            "fit_seconds": round(fit.fit_seconds, 3),
            "features": spec.names,
        }
    return out


def without_time_proxy(
    frames: dict[str, pd.DataFrame], config: LearningCurveConfig, oracle_auc: float
) -> dict[str, dict[str, Any]]:
    """Logistic regression and LightGBM on the full training split without TIME_PROXY_FEATURES (see there)."""
    spec = WITHOUT_TIME_PROXY.fit(frames["train"])
    arrays = {split: _arrays(spec, frames[split]) for split in ("train", "val", "test")}
    labels = arrays["test"]["target"]
    fit = fit_logistic(arrays["train"])
    gbm = fit_lightgbm(arrays["train"], arrays["val"], LIGHTGBM_SETTINGS["lightgbm_tuned"], config.seed)
    gbm_probs = gbm.predict(arrays["test"])
    return {
        "dropped": list(TIME_PROXY_FEATURES),
        "logistic": {
            **_score(fit.predict(arrays["test"]), labels, oracle_auc),
            "fit_seconds": round(fit.fit_seconds, 3),
        },
        "lightgbm_tuned": {
            **_score(gbm_probs, labels, oracle_auc),
            "fit_seconds": round(gbm.fit_seconds, 3),
            "mean_prediction": round(float(gbm_probs.mean()), 4),
        },
    }


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
        run_mlp = config.mlp_max_opportunities is None or size <= config.mlp_max_opportunities
        t0 = time.perf_counter()
        models = fit_models(train, val, test, config, oracle_auc, run_mlp)
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
    ablation = without_time_proxy(frames, config, oracle_auc) if config.time_proxy_ablation else None
    if ablation is not None:
        log(
            f"without {TIME_PROXY_FEATURES}: logistic {ablation['logistic']['auc']}, "
            f"lightgbm {ablation['lightgbm_tuned']['auc']}"
        )
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
        "without_time_proxy": ablation,
        "positive_rate": {split: round(float(frames[split]["label"].mean()), 5) for split in ("train", "val", "test")},
        "extrapolation": extrapolate(curve),
    }


def _summary(entry: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {m['auc']:.4f}" if "auc" in m else f"{name} skipped" for name, m in entry["models"].items()
    )


def _power_law(n: np.ndarray, asymptote: float, scale: float, exponent: float) -> np.ndarray:
    return asymptote - scale * np.power(n, -exponent)


def extrapolate(curve: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model with >= 4 sizes: AUC(n) = a - b n^-c by least squares (scipy), a = the AUC this feature set
    would reach with unlimited deals. A rough estimate - reported next to the measured points, not instead."""
    out: dict[str, dict[str, Any]] = {}
    names = {name for entry in curve for name in entry["models"]}
    for name in sorted(names):
        points = [(e["opportunities"], e["models"][name]["auc"]) for e in curve if "auc" in e["models"].get(name, {})]
        if len(points) < 4:
            out[name] = {"fitted": False, "reason": f"{len(points)} points (< 4)"}
            continue
        n, auc = (np.asarray(v, dtype=np.float64) for v in zip(*points, strict=True))
        try:
            params, _ = curve_fit(
                _power_law, n / 1000.0, auc, p0=(auc[-1], 0.01, 0.5), bounds=([0.5, 0.0, 0.05], [1.0, 1.0, 3.0])
            )
        except (RuntimeError, ValueError) as exc:
            out[name] = {"fitted": False, "reason": str(exc)}
            continue
        out[name] = {
            "fitted": True,
            "asymptote_auc": round(float(params[0]), 5),
            "scale": round(float(params[1]), 5),
            "exponent": round(float(params[2]), 4),
            "max_abs_residual": round(float(np.max(np.abs(_power_law(n / 1000.0, *params) - auc))), 5),
        }
    return out


MODEL_LABELS = {"logistic": "logistic regression", "lightgbm_tuned": "LightGBM (tuned)", "mlp": "MLP (default)"}


def plot_learning_curve(report: dict[str, Any], path: str | Path) -> None:
    """AUC vs training deals (log x), one line per model, the oracle and 0.97 x oracle as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a build machine
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.5, 5.0))
    names = [name for name in MODELS if any(name in e["models"] for e in report["curve"])]
    for name in names:
        points = [(e["opportunities"], e["models"][name]["auc"]) for e in report["curve"] if "auc" in e["models"][name]]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=MODEL_LABELS.get(name, name))
    oracle = report["oracle"]["auc"]
    ax.axhline(oracle, color="black", linestyle="-", linewidth=1, label=f"oracle {oracle:.4f}")
    ax.axhline(
        report["target_auc"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"0.97 x oracle {report['target_auc']:.4f}",
    )
    ablation = report.get("without_time_proxy")
    if ablation:
        ax.plot(
            [report["curve"][-1]["opportunities"]],
            [ablation["lightgbm_tuned"]["auc"]],
            marker="*",
            markersize=12,
            linestyle="none",
            label=f"LightGBM without {', '.join(ablation['dropped'])}",
        )
    truth = report["ceilings"].get("observed_plus_z_logistic")
    if truth is not None:
        ax.axhline(
            truth["auc"], color="grey", linestyle=":", linewidth=1, label=f"observed + true z (LR) {truth['auc']:.4f}"
        )
    ax.set_xscale("log")
    ax.set_xlabel("deals in the CRM the model trains on (log scale)")
    ax.set_ylabel("holdout AUC (one fixed holdout)")
    ax.set_title("Deal win: learning curve vs the oracle")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: the curves fill the bottom
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render_markdown(report: dict[str, Any]) -> str:
    """A short human summary of the JSON: the table, the ceilings, and what the numbers say."""
    oracle, target = report["oracle"]["auc"], report["target_auc"]
    names = [name for name in MODELS if any(name in e["models"] for e in report["curve"])]
    header = "| deals | train rows | " + " | ".join(MODEL_LABELS.get(n, n) for n in names) + " |"
    lines = [
        "# Deal win: learning curve vs the oracle",
        "",
        f"Generated by `scripts/bench_learning_curve.py` at commit `{report.get('git_commit', 'unknown')}` in "
        f"{report.get('wall_seconds', '?')} s. One simulated CRM of {report['config']['crm_opportunities']:,} deals "
        "(same story as the default config, reps and companies scaled with the deals); one fixed holdout "
        f"(test period, {report['holdout']['rows']:,} rows of {report['holdout']['opportunities']:,} deals, "
        f"hash `{report['holdout']['hash']}`). Each size trains on the train (and val) rows of the first N deals "
        "of one permutation: nested, all snapshots of a deal together.",
        "",
        f"Oracle AUC on the holdout: **{oracle:.4f}**; target 0.97 x oracle: **{target:.4f}**.",
        "",
        "Holdout AUC (ratio to the oracle):",
        "",
        header,
        "|---:|---:|" + "---:|" * len(names),
    ]
    for entry in report["curve"]:
        cells = []
        for name in names:
            m = entry["models"].get(name, {})
            cells.append(f"{m['auc']:.4f} ({m['ratio_to_oracle']:.3f})" if "auc" in m else "skipped")
        lines.append(f"| {entry['opportunities']:,} | {entry['train_rows']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ceilings and diagnostics: logistic regression on the full training split, given what the CRM features lack "
        "(latent truth; the final MEDDPICC score, which the CRM stores without history):",
        "",
    ]
    lines += ["| model | AUC | ratio to oracle | log loss |", "|---|---:|---:|---:|"]
    for name, c in report["ceilings"].items():
        lines.append(f"| {name} | {c['auc']:.4f} | {c['ratio_to_oracle']:.3f} | {c['log_loss']:.4f} |")
    ablation = report.get("without_time_proxy")
    if ablation:
        rates = report.get("positive_rate", {})
        lines += [
            "",
            f"Without the time proxy {', '.join(f'`{f}`' for f in ablation['dropped'])} (full training split): "
            f"logistic regression {ablation['logistic']['auc']:.4f} (log loss {ablation['logistic']['log_loss']:.4f}), "
            f"LightGBM {ablation['lightgbm_tuned']['auc']:.4f} (log loss {ablation['lightgbm_tuned']['log_loss']:.4f}, "
            f"mean prediction {ablation['lightgbm_tuned']['mean_prediction']:.3f}). "
            f"Positive rate train / val / test: {rates.get('train')} / {rates.get('val')} / {rates.get('test')}.",
        ]
    lines += ["", "Extrapolated asymptote, AUC(n) = a - b n^-c:", ""]
    for name, e in report["extrapolation"].items():
        if e.get("fitted"):
            lines.append(
                f"- {MODEL_LABELS.get(name, name)}: a = {e['asymptote_auc']:.4f} "
                f"({e['asymptote_auc'] / oracle:.3f} x oracle), max residual {e['max_abs_residual']:.4f}"
            )
        else:
            lines.append(f"- {MODEL_LABELS.get(name, name)}: not fitted ({e['reason']})")
    lines += ["", "## What it says", "", *verdict(report)]
    if report.get("notes"):
        lines += ["", "## Notes", "", *[f"- {note}" for note in report["notes"]]]
    return "\n".join(lines) + "\n"


def verdict(report: dict[str, Any]) -> list[str]:
    """Data-driven sentences: does AUC approach the target with data, and what do the ceilings say?"""
    oracle, target = report["oracle"]["auc"], report["target_auc"]
    out = []
    names = [name for name in MODELS if any(name in e["models"] for e in report["curve"])]
    for name in names:
        measured = [e for e in report["curve"] if "auc" in e["models"].get(name, {})]
        if len(measured) < 2:
            continue
        first, last = measured[0], measured[-1]
        m = last["models"][name]
        gain = m["auc"] - first["models"][name]["auc"]
        out.append(
            f"- {MODEL_LABELS.get(name, name)}: {first['models'][name]['auc']:.4f} at {first['opportunities']:,} deals "
            f"-> {m['auc']:.4f} at {last['opportunities']:,} ({gain:+.4f}); ratio {m['ratio_to_oracle']:.3f}, "
            f"{'meets' if m['auc'] >= target else 'below'} the 0.97 target."
        )
    best = max((m["auc"] for m in report["curve"][-1]["models"].values() if "auc" in m), default=float("nan"))
    asymptotes = [e["asymptote_auc"] for e in report["extrapolation"].values() if e.get("fitted")]
    if asymptotes:
        out.append(
            f"- Best extrapolated asymptote {max(asymptotes):.4f} = {max(asymptotes) / oracle:.3f} x oracle "
            f"({'above' if max(asymptotes) >= target else 'below'} the target)."
        )
    c = report["ceilings"]
    if {"observed_plus_z_logistic", "observed_plus_rest_logistic", "latent_truth_logistic"} <= set(c):
        z, rest, truth = (
            c[k] for k in ("observed_plus_z_logistic", "observed_plus_rest_logistic", "latent_truth_logistic")
        )
        out.append(
            f"- Given the deal's latent quality z, the same logistic regression reaches {z['auc']:.4f} "
            f"({z['ratio_to_oracle']:.3f}); given the rest of the true logit (rep skill + company + value) instead, "
            f"{rest['auc']:.4f} ({rest['ratio_to_oracle']:.3f}); given only the truth and the stage, "
            f"{truth['auc']:.4f} ({truth['ratio_to_oracle']:.3f}). Best CRM-only model at full size: {best:.4f}."
        )
    ablation = report.get("without_time_proxy")
    last_gbm = report["curve"][-1]["models"].get("lightgbm_tuned", {})
    if ablation and "auc" in last_gbm:
        without = ablation["lightgbm_tuned"]
        reading = (
            "a feature that encodes calendar time, not a lack of data, holds the trees back"
            if without["auc"] > last_gbm["auc"] + 0.005
            else "dropping it changes little"
        )
        out.append(
            f"- LightGBM without {', '.join(ablation['dropped'])} at full size: {without['auc']:.4f} "
            f"(with it: {last_gbm['auc']:.4f}; log loss {without['log_loss']:.4f} vs {last_gbm['log_loss']:.4f}): "
            f"{reading}."
        )
    if "observed_plus_meddpicc_logistic" in c:
        m = c["observed_plus_meddpicc_logistic"]
        out.append(
            f"- With the MEDDPICC score as it would be with a point-in-time history: {m['auc']:.4f} "
            f"({m['ratio_to_oracle']:.3f} x oracle, {'meets' if m['auc'] >= target else 'below'} the target)."
        )
    return out
