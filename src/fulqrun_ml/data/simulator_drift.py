"""A drifting future for the simulator: known changes with a known onset, so monitoring can be scored.

Production data moves: the economy turns, the market mix shifts, prices rise, a new product line arrives. A
monitor's worth is how soon it notices, and how rarely it cries wolf when nothing moved. The simulator applies
one `DriftScenario` to every deal created on or after `onset_day` (days after the simulation start). The
scenario draws from its own generator (`seed`, 3), never from the main stream, so deals created earlier keep
their company, value, rep, outcome and stage history. Their touches do not stay byte for byte: the simulator
draws every deal's touches from one stream (`simulator_touches.simulate_deal_touches`), so a drift that
changes later deals' outcomes or values (hence their close days) re-draws everyone's touches from the same
distribution (measured by `fulqrun-ml monitor simulate`: same rows and stages, other activity counts).

Scenarios (effect sizes are the ground truth `fulqrun-ml monitor simulate` scores against; docs/simulator.md):

- `downturn`: every new deal's win logit drops by `logit_shift` (default -0.45: the win rate falls by ~10
  points from ~40%; prices and the mix unchanged, so only outcomes and calibration move).
- `industry_mix`: a share `mix_share` (default 0.5) of new deals is re-drawn from companies in `industry`
  (default retail, the hardest industry): the `industry` feature's distribution moves, and with it the win rate.
- `price_increase`: new deals' values are multiplied by `1 + price_change` (default +30%): `value` drifts, and the
  story's -0.25 log(value) term lowers the win odds by 0.25 log(1.3) ≈ 0.066 on the logit.
- `new_product`: a share `mix_share` of new deals is a new product line, 3x the usual value with a win logit
  `logit_shift` lower: both a feature and an outcome shift, on a subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["downturn", "industry_mix", "price_increase", "new_product"]
KINDS: tuple[str, ...] = ("downturn", "industry_mix", "price_increase", "new_product")


@dataclass(frozen=True)
class DriftScenario:
    kind: Kind
    onset_day: float
    logit_shift: float = -0.45
    mix_share: float = 0.5
    industry: str = "retail"
    price_change: float = 0.30

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"drift kind: unknown '{self.kind}'; use one of {list(KINDS)}")
        if not 0.0 <= self.mix_share <= 1.0:
            raise ValueError(f"drift mix_share: must be in [0, 1], got {self.mix_share}")
        if self.price_change <= -1.0:
            raise ValueError(f"drift price_change: must be > -1, got {self.price_change}")

    def apply(
        self,
        rng: np.random.Generator,
        created_days: np.ndarray,
        company_idx: np.ndarray,
        value: np.ndarray,
        industries: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(company_idx, value, extra win logit, drifted mask) for the deals; inputs are not modified."""
        company_idx, value = company_idx.copy(), value.copy()
        drifted = created_days >= self.onset_day
        shift = np.zeros(len(value))
        chosen = drifted & (rng.uniform(size=len(value)) < self.mix_share)
        if self.kind == "downturn":
            shift[drifted] = self.logit_shift
        elif self.kind == "industry_mix":
            pool = np.flatnonzero(industries == self.industry)
            if pool.size == 0:
                raise ValueError(f"drift industry: no simulated company is in '{self.industry}'")
            company_idx[chosen] = rng.choice(pool, size=int(chosen.sum()))
        elif self.kind == "price_increase":
            value[drifted] = np.round(value[drifted] * (1.0 + self.price_change), 2)
        else:  # new_product
            value[chosen] = np.round(value[chosen] * 3.0, 2)
            shift[chosen] = self.logit_shift
        return company_idx, value, shift, drifted
