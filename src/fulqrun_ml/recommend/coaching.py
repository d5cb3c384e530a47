"""Rep x stage conversion effects against peers, adjusted for deal mix and shrunk, turned into coaching suggestions.

Model: a deal that reached open stage k either converts out of it or not; P(convert) = sigmoid(x'beta + b[rep,k])
with deal covariates x (stage, industry, size, log value, MEDDPICC score) and a random effect b[rep,k] ~
N(0, tau^2) per rep x stage: a logistic GLMM. Fitted by backfitting, because the random effects have to be
estimated jointly with the covariates (books are not random: strong reps get the hard enterprise deals, so a
covariate fit that ignores reps would credit the deal mix with the reps' skill):
1. covariates: statsmodels' Binomial GLM with the current b as an offset (a maintained IRLS solver);
2. rep x stage effects: each cell's posterior mode under the N(0, tau^2) prior given the covariate offset, by a
   few vectorised Newton steps (hand-written: statsmodels' BinomialBayesMixedGLM is a variational fit that
   needs minutes for a hundred cells, this is one closed-form step per iteration), with tau^2 by the method of
   moments from the unshrunk estimates and their sampling variances (empirical Bayes).
A small rep's effect stays near 0 (the peers) until its deals say otherwise; its interval says how sure we are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.errors import FieldValidationError

CATEGORICAL = ("industry", "size")
TRAINING = {
    "prospecting": "discovery: finding pain and the economic buyer in the first calls",
    "qualifying": "qualification: working the MEDDPICC gaps before investing in a proposal",
    "proposal": "value proposal: quantified business case and mutual plan",
    "negotiation": "negotiation and closing: paper process, concessions, executive alignment",
}


@dataclass(frozen=True)
class CoachingConfig:
    """Fit and suggestion settings (configs/recommend/coaching.yaml)."""

    iterations: int = 20  # backfitting rounds at most
    tolerance: float = 1e-3  # stop when no effect moves more than this (log-odds)
    min_tau2: float = 0.005
    min_confidence: float = 0.8  # P(effect below peers) a suggestion needs
    min_gap_points: float = 0.02  # and a conversion gap of at least this (absolute probability)
    interval: float = 0.9


def validate_deals(deals: pd.DataFrame) -> None:
    """Refuse a bad deals table with the field named."""
    for column in ("rep_id", "industry", "size", "value", "meddpicc_score", "closed", "stage_reached", "won"):
        if column not in deals.columns:
            raise FieldValidationError(column, "missing from the deals table")
    value = pd.to_numeric(deals["value"], errors="coerce")
    if value.isna().any() or (value <= 0).any():
        raise FieldValidationError("value", "every deal needs a positive value")
    reached = pd.to_numeric(deals["stage_reached"], errors="coerce")
    if reached.isna().any() or (reached < 0).any() or (reached > len(OPEN_STAGES)).any():
        raise FieldValidationError("stage_reached", f"must be an integer stage index in [0, {len(OPEN_STAGES)}]")
    if pd.to_numeric(deals["meddpicc_score"], errors="coerce").isna().any():
        raise FieldValidationError("meddpicc_score", "must be numeric with no missing values")
    if deals["rep_id"].isna().any():
        raise FieldValidationError("rep_id", "every deal needs a rep")
    if not deals["closed"].astype(bool).any():
        raise FieldValidationError("closed", "no closed deals to learn stage conversion from")


def stage_rows(deals: pd.DataFrame) -> pd.DataFrame:
    """One row per closed deal per open stage it reached: did it convert out of that stage?"""
    closed = deals[deals["closed"].astype(bool)].reset_index(drop=True)
    reached = closed["stage_reached"].to_numpy(dtype=int)
    n_rows = np.minimum(reached, len(OPEN_STAGES) - 1) + 1
    deal = np.repeat(np.arange(len(closed)), n_rows)
    stage = np.arange(deal.size) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    rows = closed.iloc[deal].reset_index(drop=True)
    rows["stage_index"] = stage
    rows["converted"] = (stage < reached[deal]).astype(float)
    return rows


def design(rows: pd.DataFrame, levels: dict[str, list[str]] | None = None) -> tuple[np.ndarray, dict]:
    """Intercept, stage dummies, industry / size dummies, log value, standardised MEDDPICC score."""
    levels = levels or {c: sorted(rows[c].astype(str).unique()) for c in CATEGORICAL}
    parts = [np.ones((len(rows), 1))]
    stage = rows["stage_index"].to_numpy(dtype=int)
    parts.append(np.stack([(stage == k).astype(float) for k in range(1, len(OPEN_STAGES))], axis=1))
    for column in CATEGORICAL:
        values = rows[column].astype(str).to_numpy()
        parts.append(np.stack([(values == level).astype(float) for level in levels[column][1:]], axis=1))
    parts.append(np.log(rows["value"].to_numpy(dtype=float) / 50_000)[:, None])
    parts.append((rows["meddpicc_score"].to_numpy(dtype=float)[:, None] - 50.0) / 30.0)
    return np.concatenate([p for p in parts if p.shape[1]], axis=1), levels


@dataclass
class StageEffects:
    """The fitted model: covariate coefficients, per-cell effects with posterior sd, tau^2 and raw rates."""

    beta: np.ndarray
    levels: dict[str, list[str]]
    cells: pd.DataFrame  # rep_id, stage, n, conversions, raw_rate, expected_rate, effect, effect_sd, unshrunk
    tau2: float


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def fit_stage_effects(deals: pd.DataFrame, config: CoachingConfig) -> StageEffects:
    """Backfit covariates (GLM with offset) and shrunk rep x stage effects (empirical-Bayes posterior modes)."""
    validate_deals(deals)
    rows = stage_rows(deals)
    x, levels = design(rows)
    y = rows["converted"].to_numpy()
    cell_keys = pd.MultiIndex.from_arrays([rows["rep_id"].astype(str), rows["stage_index"]])
    cells, cell = np.unique(cell_keys.codes[0] * len(OPEN_STAGES) + cell_keys.codes[1], return_inverse=True)
    n_cells = len(cells)
    b = np.zeros(n_cells)
    tau2 = 0.1
    beta = np.zeros(x.shape[1])
    for _ in range(config.iterations):
        glm = sm.GLM(y, x, family=sm.families.Binomial(), offset=b[cell])
        beta = np.asarray(glm.fit().params)
        eta = x @ beta
        previous = b.copy()
        for _step in range(6):  # Newton on each cell's penalised log-likelihood
            p = _sigmoid(eta + b[cell])
            grad = np.bincount(cell, y - p, n_cells) - b / tau2
            hess = np.bincount(cell, p * (1 - p), n_cells) + 1.0 / tau2
            b = b + grad / hess
        # "Against peers": each stage's effects average 0 over reps; the stage dummies absorb the shift next round.
        stage_of_cell = cells % len(OPEN_STAGES)
        b = (
            b
            - (
                np.bincount(stage_of_cell, b, len(OPEN_STAGES))
                / np.bincount(stage_of_cell, minlength=len(OPEN_STAGES)).clip(1)
            )[stage_of_cell]
        )
        p0 = _sigmoid(eta)
        info = np.bincount(cell, p0 * (1 - p0), n_cells)
        unshrunk = np.bincount(cell, y - p0, n_cells) / np.maximum(info, 1e-9)
        usable = info > 1.0
        tau2 = max(float(np.mean(unshrunk[usable] ** 2 - 1.0 / info[usable])), config.min_tau2) if usable.any() else 1.0
        if np.max(np.abs(b - previous)) < config.tolerance:
            break
    p = _sigmoid(eta + b[cell])
    rep_codes, stage_codes = cells // len(OPEN_STAGES), cells % len(OPEN_STAGES)
    table = pd.DataFrame(
        {
            "rep_id": cell_keys.levels[0].to_numpy()[rep_codes],
            "stage": np.asarray(OPEN_STAGES)[cell_keys.levels[1].to_numpy()[stage_codes]],
            "n": np.bincount(cell, minlength=n_cells),
            "conversions": np.bincount(cell, y, n_cells),
            "expected_rate": np.bincount(cell, p0, n_cells) / np.bincount(cell, minlength=n_cells),
            "effect": b,
            "effect_sd": 1.0 / np.sqrt(np.bincount(cell, p * (1 - p), n_cells) + 1.0 / tau2),
            "unshrunk_effect": unshrunk,
        }
    )
    table["raw_rate"] = table["conversions"] / table["n"]
    return StageEffects(beta=beta, levels=levels, cells=table, tau2=tau2)
