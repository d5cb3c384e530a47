"""Products with a known product x segment truth (optional; `simulate_crm(products=ProductStory())`).

Why: "which product wins where" (product-positioning signals in recommend/strategy.py) can only be checked
against a simulator that knows the true effect of each product in each segment. The story, added to the win
logit of `simulator.py` (step 3) only when a story is given, so the default CRM is what it was (its
`opportunities.product` reads "unknown", like an export without the column):

1. Each deal sells one product, drawn at creation from a mix that depends on the account's size (`mix`):
   enterprises buy the suite more often, small firms the core CRM.
2. The product shifts the deal's win logit by `base[product] + industry_fit[product][industry] +
   size_fit[product][size]` (missing entries are 0): a true product x industry x size table of effects.

Draws use their own generator (`default_rng([seed, 18])`). `latent` gains `product_effect` (the logit shift).
Effect sizes: docs/simulator.md, "Products".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PRODUCTS: tuple[str, ...] = ("core_crm", "analytics", "enterprise_suite", "integrations")


def _mix() -> dict[str, tuple[float, ...]]:
    return {
        "smb": (0.50, 0.20, 0.05, 0.25),
        "mid_market": (0.30, 0.30, 0.20, 0.20),
        "enterprise": (0.10, 0.30, 0.45, 0.15),
    }


def _industry_fit() -> dict[str, dict[str, float]]:
    return {
        "core_crm": {"retail": 0.3, "software": -0.2},
        "analytics": {"financial_services": 0.5, "healthcare": 0.3, "retail": -0.3},
        "enterprise_suite": {"manufacturing": 0.4, "financial_services": 0.2, "software": -0.3},
        "integrations": {"software": 0.5, "manufacturing": -0.2},
    }


def _size_fit() -> dict[str, dict[str, float]]:
    return {
        "core_crm": {"smb": 0.3, "enterprise": -0.3},
        "analytics": {"mid_market": 0.2},
        "enterprise_suite": {"enterprise": 0.6, "smb": -0.7},
        "integrations": {"smb": -0.2},
    }


@dataclass(frozen=True)
class ProductDraw:
    """Each deal's product and its logit shift (what the win logit adds)."""

    product: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True)
class ProductStory:
    """The product mix per company size and the true logit effects (see the module docstring)."""

    base: tuple[float, ...] = (0.0, -0.1, -0.2, 0.1)
    mix: dict[str, tuple[float, ...]] = field(default_factory=_mix)
    industry_fit: dict[str, dict[str, float]] = field(default_factory=_industry_fit)
    size_fit: dict[str, dict[str, float]] = field(default_factory=_size_fit)

    def __post_init__(self) -> None:
        if len(self.base) != len(PRODUCTS):
            raise ValueError(f"base needs one value per product {PRODUCTS}")
        for size, shares in self.mix.items():
            if len(shares) != len(PRODUCTS) or not np.isclose(sum(shares), 1.0) or min(shares) < 0:
                raise ValueError(f"mix[{size!r}] must be {len(PRODUCTS)} probabilities summing to 1, got {shares}")

    def true_effect(self, product: str, industry: str, size: str) -> float:
        """The true logit shift of selling `product` to an account of `industry` and `size`."""
        return (
            self.base[PRODUCTS.index(product)]
            + self.industry_fit.get(product, {}).get(industry, 0.0)
            + self.size_fit.get(product, {}).get(size, 0.0)
        )

    def draw(self, rng: np.random.Generator, industry: np.ndarray, size: np.ndarray) -> ProductDraw:
        """Each deal's product (from its account size's mix; an unknown size gets the mid-market mix)."""
        u = rng.uniform(size=len(size))
        product = np.empty(len(size), dtype=object)
        for s in np.unique(size):
            rows = size == s
            cumulative = np.cumsum(self.mix.get(str(s), self.mix["mid_market"]))
            pick = np.minimum((u[rows, None] > cumulative[None, :]).sum(axis=1), len(PRODUCTS) - 1)
            product[rows] = np.asarray(PRODUCTS, dtype=object)[pick]
        shift = np.array([self.true_effect(p, i, s) for p, i, s in zip(product, industry, size, strict=True)])
        return ProductDraw(product, shift)
