"""Competitors and loss reasons with a known truth (optional; `simulate_crm(competition=CompetitionScenario())`).

Why: win rate against each competitor, and market trends with change points, can only be checked against a
simulator that knows the true effects and the true onset. The story, added to the win logit of
`simulator.py` (step 3) only when a scenario is given, so the default CRM is exactly what it was:

1. Each deal meets at most one competitor, drawn at creation from `presence` (COMPETITORS; "none" = no
   competitor). It shifts the deal's win logit by that competitor's `effect`.
2. The entrant: from `entry_day` on, in `entry_region` (the account's region), `entrant` launches a new
   product: it shows up in `entrant_presence` of the region's new deals and its effect becomes
   `entrant_effect`. A true change point in that competitor's win rate and in the region's win rate.
3. A lost deal's true cause is drawn with odds exp(contribution / 0.5) among four causes, each one of the
   logit's own terms: low latent quality -> no_decision, the competitor's effect -> lost_to_competitor, a high
   amount -> price, a poor industry/size fit -> product_fit. The rep records it, but picks a random reason
   with probability `misreport` (CRM loss reasons are noisy).

The competitor is recorded at creation (the contract keeps no history of the field), the loss reason at the
close, so both are point-in-time for closed deals. Draws use their own generator (`default_rng([seed, 16])`).
`latent` gains `competitor_effect` (the logit shift) and `loss_cause` (the true cause, "" unless lost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COMPETITORS: tuple[str, ...] = ("none", "apex", "brightline", "corvid")
LOSS_REASONS: tuple[str, ...] = ("no_decision", "lost_to_competitor", "price", "product_fit")
CAUSE_TEMPERATURE = 0.5


@dataclass(frozen=True)
class CompetitionDraw:
    """Each deal's competitor and its logit shift (what the win logit adds)."""

    competitor: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True)
class CompetitionScenario:
    """Who competes, how hard, and when the entrant arrives (see the module docstring)."""

    presence: tuple[float, ...] = (0.35, 0.30, 0.20, 0.15)
    effect: tuple[float, ...] = (0.0, -0.6, -0.25, 0.15)
    entrant: str = "corvid"
    entry_day: float = 365.0
    entry_region: str = "emea"
    entrant_presence: float = 0.6
    entrant_effect: float = -1.4
    misreport: float = 0.15

    def __post_init__(self) -> None:
        if len(self.presence) != len(COMPETITORS) or len(self.effect) != len(COMPETITORS):
            raise ValueError(f"presence and effect need one value per competitor {COMPETITORS}")
        if not np.isclose(sum(self.presence), 1.0) or min(self.presence) < 0:
            raise ValueError(f"presence must be probabilities summing to 1, got {self.presence}")
        if self.entrant not in COMPETITORS[1:]:
            raise ValueError(f"entrant must be one of {COMPETITORS[1:]}, got {self.entrant!r}")

    def true_effect(self, competitor: str, day: float, region: str) -> float:
        """The true logit shift of meeting `competitor` on a deal created on `day` in `region`."""
        if competitor == self.entrant and day >= self.entry_day and region == self.entry_region:
            return self.entrant_effect
        return self.effect[COMPETITORS.index(competitor)]

    def draw(self, rng: np.random.Generator, created_day: np.ndarray, region: np.ndarray) -> CompetitionDraw:
        """Each deal's competitor and logit shift."""
        n = len(created_day)
        index = rng.choice(len(COMPETITORS), size=n, p=np.asarray(self.presence))
        entered = (created_day >= self.entry_day) & (np.asarray(region) == self.entry_region)
        takes = entered & (rng.uniform(size=n) < self.entrant_presence)
        index = np.where(takes, COMPETITORS.index(self.entrant), index)
        shift = np.asarray(self.effect)[index]
        shift = np.where(entered & (index == COMPETITORS.index(self.entrant)), self.entrant_effect, shift)
        return CompetitionDraw(np.asarray(COMPETITORS, dtype=object)[index], shift)

    def loss_reasons(
        self,
        rng: np.random.Generator,
        lost: np.ndarray,
        quality_term: np.ndarray,
        competitor_shift: np.ndarray,
        price_term: np.ndarray,
        fit_term: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(true cause, recorded reason) per deal; both "" where the deal is not lost.

        Each argument is that term's contribution to the win logit (negative = it pushed towards a loss)."""
        contribution = -np.column_stack([quality_term, competitor_shift, price_term, fit_term]) / CAUSE_TEMPERATURE
        odds = np.exp(contribution - contribution.max(axis=1, keepdims=True))
        cumulative = np.cumsum(odds / odds.sum(axis=1, keepdims=True), axis=1)
        cause = (rng.uniform(size=len(lost))[:, None] > cumulative).sum(axis=1).clip(max=len(LOSS_REASONS) - 1)
        misreported = rng.uniform(size=len(lost)) < self.misreport
        recorded = np.where(misreported, rng.integers(0, len(LOSS_REASONS), size=len(lost)), cause)
        reasons = np.asarray(LOSS_REASONS, dtype=object)
        return np.where(lost, reasons[cause], ""), np.where(lost, reasons[recorded], "")
