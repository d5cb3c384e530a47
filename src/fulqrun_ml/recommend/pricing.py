"""Per-deal win-probability-vs-discount curves, monotone by construction, and the expected-revenue optimum.

A curve model predicts `won` from the deal's segment (industry, size, where price is negotiated, competitor
present), its value, the discount, and the *proxy of why reps discount* (`meddpicc_score`: reps discount deals
they see slipping; docs/simulator.md "Discounts and price elasticity"). Two methods, both monotone by construction:
- `concave_logit` (default, `pricing_concave.py`): a logistic model whose discount term is a non-negative
  combination of concave hinges per segment: non-decreasing and diminishing returns by its parameterisation.
- `lightgbm`: LightGBM with `monotone_constraints` (+1 on `discount`), so every tree, hence every deal's curve,
  is non-decreasing whatever the other features. A post-hoc isotonic fit per deal would only repair one curve at
  a time; the constrained GBM keeps the interactions for free but learns the effect as steps.
The benchmark (reports/bench_recommendation_insights.json) measures both; the default is the one with less
regret there.
- **Deconfounded by adjustment.** The historical discount is chosen on `meddpicc_score`; conditioning on it
  (`adjust_for`) closes that back door. With `adjust_for: []` the same model is the naive curve, which reads
  "discounted deals lose more" as "discounts do not help" (measured in the benchmark).
- **Uncertainty by bootstrap.** `n_bootstrap` models on resampled deals; the curve is their mean (a mean of
  monotone curves is monotone), intervals are their 5th-95th percentiles.
- **Guardrails.** The discount searched is capped at `min(max_discount, 1 - cost_ratio - margin_floor)`: the
  margin after discount (price x (1 - d) - cost) must stay at or above the floor share of the list price.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.recommend.pricing_concave import ConcaveLogit, fit_concave_logit

SEGMENT_FEATURES = ("industry", "size", "discount_stage", "competitor_present")
CATEGORICAL = ("industry", "size", "discount_stage")
METHODS = ("concave_logit", "lightgbm")


@dataclass(frozen=True)
class PricingConfig:
    """Guardrails, the discount grid and the model's settings (configs/recommend/pricing.yaml)."""

    max_discount: float = 0.25
    margin_floor: float = 0.15
    cost_ratio: float = 0.60
    grid_step: float = 0.005
    adjust_for: tuple[str, ...] = ("meddpicc_score",)
    monotone: bool = True
    n_bootstrap: int = 8
    n_estimators: int = 150
    learning_rate: float = 0.05
    num_leaves: int = 8
    min_child_samples: int = 40
    method: str = "concave_logit"
    knot_quantiles: tuple[float, ...] = (0.25, 0.5, 0.75, 0.95)
    l2: float = 1.0
    seed: int = 0

    def discount_cap(self) -> float:
        """The largest discount both guardrails allow (an error naming the guardrail if none is allowed)."""
        for name in ("max_discount", "margin_floor", "cost_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise FieldValidationError(name, f"must be in [0, 1), got {value}")
        if not 0.0 < self.grid_step <= 0.1:
            raise FieldValidationError("grid_step", f"must be in (0, 0.1], got {self.grid_step}")
        if self.n_bootstrap < 1:
            raise FieldValidationError("n_bootstrap", f"must be at least 1, got {self.n_bootstrap}")
        cap = min(self.max_discount, 1.0 - self.cost_ratio - self.margin_floor)
        if cap < 0:
            reason = f"cost_ratio {self.cost_ratio} + margin_floor {self.margin_floor} exceed the list price"
            raise FieldValidationError("margin_floor", f"{reason}: no discount is allowed")
        return cap

    def grid(self) -> np.ndarray:
        """Discounts evaluated per deal: 0 to the cap in `grid_step` steps (the cap itself included)."""
        cap = self.discount_cap()
        return np.unique(np.append(np.arange(0.0, cap + 1e-12, self.grid_step), cap))


def validate_deals(deals: pd.DataFrame, config: PricingConfig, training: bool) -> None:
    """Refuse a bad deals table with the field named (never a LightGBM stack trace)."""
    needed = [*SEGMENT_FEATURES, "value", *config.adjust_for] + (["discount", "won"] if training else [])
    for column in needed:
        if column not in deals.columns:
            raise FieldValidationError(column, "missing from the deals table")
    value = pd.to_numeric(deals["value"], errors="coerce")
    if value.isna().any() or (value <= 0).any() or not np.isfinite(value).all():
        raise FieldValidationError("value", "every deal needs a positive, finite value")
    if training:
        discount = pd.to_numeric(deals["discount"], errors="coerce")
        if discount.isna().any() or (discount < 0).any() or (discount >= 1).any():
            raise FieldValidationError("discount", "must be a fraction of the list price in [0, 1)")
        if deals["won"].isna().any():
            raise FieldValidationError("won", "training deals must be closed (won true or false)")
        if deals["won"].astype(bool).nunique() < 2:
            raise FieldValidationError("won", "training deals need both wins and losses")
    for column in config.adjust_for:
        if pd.to_numeric(deals[column], errors="coerce").isna().any():
            raise FieldValidationError(column, "an adjustment feature must be numeric with no missing values")


def _design(deals: pd.DataFrame, discount: np.ndarray, config: PricingConfig) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "discount": np.asarray(discount, dtype=float),
            "log_value": np.log(deals["value"].to_numpy(dtype=float)),
            "competitor_present": deals["competitor_present"].astype(bool).to_numpy().astype(float),
        }
    )
    for column in CATEGORICAL:
        frame[column] = pd.Categorical(deals[column].astype(str).to_numpy())
    for column in config.adjust_for:
        frame[column] = pd.to_numeric(deals[column]).to_numpy(dtype=float)
    return frame


@dataclass
class BoosterCurve:
    """One bootstrap member of the LightGBM method, with the category levels it was fitted on."""

    booster: lgb.LGBMClassifier
    config: PricingConfig
    levels: dict[str, list[str]]

    def curves(self, deals: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
        """[deals x grid] P(win) at each discount."""
        repeated = deals.loc[deals.index.repeat(len(grid))].reset_index(drop=True)
        frame = _design(repeated, np.tile(grid, len(deals)), self.config)
        for column, levels in self.levels.items():
            frame[column] = pd.Categorical(frame[column].astype(str), categories=levels)
        return self.booster.predict_proba(frame)[:, 1].reshape(len(deals), len(grid))


@dataclass
class PricingModel:
    """The bootstrap ensemble (LightGBM boosters or concave logits): each member maps deals to curves."""

    members: list[BoosterCurve | ConcaveLogit]
    config: PricingConfig

    def curves(self, deals: pd.DataFrame, grid: np.ndarray | None = None) -> np.ndarray:
        """[bootstrap x deals x grid] P(win) at each discount of the grid."""
        validate_deals(deals, self.config, training=False)
        grid = self.config.grid() if grid is None else np.asarray(grid, dtype=float)
        deals = deals.reset_index(drop=True)
        return np.stack([member.curves(deals, grid) for member in self.members])


def _fit_booster(deals: pd.DataFrame, config: PricingConfig, seed: int) -> BoosterCurve:
    frame = _design(deals, deals["discount"].to_numpy(dtype=float), config)
    levels = {c: sorted(frame[c].astype(str).unique()) for c in CATEGORICAL}
    for column, cats in levels.items():
        frame[column] = pd.Categorical(frame[column].astype(str), categories=cats)
    constraints = [1 if (c == "discount" and config.monotone) else 0 for c in frame.columns]
    model = lgb.LGBMClassifier(
        n_estimators=config.n_estimators, learning_rate=config.learning_rate, num_leaves=config.num_leaves,
        min_child_samples=config.min_child_samples, monotone_constraints=constraints,
        monotone_constraints_method="advanced", random_state=seed, n_jobs=1, verbose=-1,
    )  # fmt: skip
    model.fit(frame, deals["won"].astype(bool).to_numpy().astype(int))
    return BoosterCurve(model, config, levels)


def fit_pricing_model(deals: pd.DataFrame, config: PricingConfig) -> PricingModel:
    """Fit `n_bootstrap` monotone curve models (config.method) on resampled closed deals."""
    config.discount_cap()
    if config.method not in METHODS:
        raise FieldValidationError("method", f"unknown pricing method {config.method!r}; known: {list(METHODS)}")
    validate_deals(deals, config, training=True)
    deals = deals.reset_index(drop=True)
    rng = np.random.default_rng(config.seed)
    members: list[BoosterCurve | ConcaveLogit] = []
    for b in range(config.n_bootstrap):
        rows = rng.integers(0, len(deals), len(deals)) if config.n_bootstrap > 1 else np.arange(len(deals))
        sample = deals.iloc[rows].reset_index(drop=True)
        if config.method == "lightgbm":
            members.append(_fit_booster(sample, config, config.seed + b))
        else:
            members.append(
                fit_concave_logit(sample, config.adjust_for, config.knot_quantiles, config.l2, config.monotone)
            )
    return PricingModel(members=members, config=config)


@dataclass(frozen=True)
class PriceRecommendation:
    """Per deal: the recommended discount, its expected revenue and win probability, with bootstrap intervals."""

    table: pd.DataFrame
    grid: np.ndarray
    curve: np.ndarray  # [deals x grid] mean P(win)


def recommend_discounts(model: PricingModel, deals: pd.DataFrame) -> PriceRecommendation:
    """argmax_d value x (1 - d) x p(d) within the guardrails, on the mean curve; intervals from each bootstrap
    model's own optimum (discount) and from the spread of revenue at the chosen discount."""
    deals = deals.reset_index(drop=True)
    grid = model.config.grid()
    curves = model.curves(deals, grid)
    value = deals["value"].to_numpy(dtype=float)
    revenue = value[None, :, None] * (1.0 - grid)[None, None, :] * curves
    mean_curve = curves.mean(axis=0)
    mean_revenue = revenue.mean(axis=0)
    best = mean_revenue.argmax(axis=1)
    rows = np.arange(len(deals))
    per_model_best = grid[revenue.argmax(axis=2)]  # [bootstrap x deals]
    at_best = revenue[:, rows, best]
    table = pd.DataFrame(
        {
            "recommended_discount": grid[best],
            "discount_low": np.percentile(per_model_best, 5, axis=0),
            "discount_high": np.percentile(per_model_best, 95, axis=0),
            "win_probability": mean_curve[rows, best],
            "win_probability_at_list": mean_curve[:, 0],
            "expected_revenue": mean_revenue[rows, best],
            "expected_revenue_low": np.percentile(at_best, 5, axis=0),
            "expected_revenue_high": np.percentile(at_best, 95, axis=0),
            "expected_revenue_at_list": mean_revenue[:, 0],
            "discount_cap": grid[-1],
        }
    )
    if "opportunity_id" in deals.columns:
        table.insert(0, "opportunity_id", deals["opportunity_id"].to_numpy())
    return PriceRecommendation(table=table, grid=grid, curve=mean_curve)
