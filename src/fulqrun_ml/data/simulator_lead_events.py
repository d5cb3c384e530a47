"""Lead behaviour with intent dynamics for the simulated CRM (`simulate_crm(lead_events=True)`): site visits, content
downloads, email opens and replies and form fills in the optional `lead_events` table.

Why: in the default story a lead converts with a probability set by its latent quality q, and its touches are
Poisson given q, so counts are all a model needs. Marketing-automation data is not like that: what predicts a
conversion is *intent*, a state that rises (a buying project starts) or decays (the project is shelved), and it
shows in what a lead does and when, not only how often. Here, per lead (own generator `default_rng([seed, 21])`,
so the default CRM, which draws nothing here, stays byte-identical):

1. **Intent trend.** tau ~ N(0, 1) moves the conversion logit (`TREND_CONVERSION_EFFECT * tau`, drawn before the
   outcome, so `true_conversion_probability` stays the Bayes truth given all latents) and tilts intent over the
   lead's life: intent(u) = TREND_TILT * tau * (u - 1/2), u = share of the life (creation to decision) elapsed.
   Over the whole life the tilt nearly cancels, so a lead's event count says little about tau; *when* its events
   happen and *which* ones do.
2. **Event rate.** Events arrive at BASE_RATE * exp(QUALITY_RATE * q + intent(u)) per day (a thinned Poisson process).
3. **Event mix.** Each event's type is drawn with logits TYPE_BASE + TYPE_SLOPE * intent(u): at high intent a lead
   downloads, replies and fills forms; at low intent it only opens emails and visits the site.
4. **Hand-raise and going cold** (follow the outcome: the buyer decided). A lead that will convert raises its hand
   Gamma(2, HAND_RAISE_MEAN_DAYS / 2) days before converting (rate x HAND_RAISE_FACTOR, intent + HAND_RAISE_INTENT);
   one that will not goes cold Gamma(2, COLD_MEAN_DAYS / 2) days before it is disqualified (rate x COLD_FACTOR).

Events stop at the lead's decision or the extraction, whichever is first, and never precede the lead's creation.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.uuids import seeded_uuids
from fulqrun_ml.data.vocabulary import LEAD_EVENT_TYPES

TREND_CONVERSION_EFFECT = 1.2
TREND_TILT = 2.0
BASE_RATE, QUALITY_RATE = 0.25, 0.3  # events per day at q = intent = 0
TYPE_BASE = np.array([1.0, 0.0, 0.8, -0.8, -1.5])  # LEAD_EVENT_TYPES order
TYPE_SLOPE = np.array([0.0, 0.5, -0.3, 0.8, 1.0])
HAND_RAISE_MEAN_DAYS, HAND_RAISE_FACTOR, HAND_RAISE_INTENT = 6.0, 3.0, 1.0
COLD_MEAN_DAYS, COLD_FACTOR = 20.0, 0.2
_MIN_LIFE_DAYS = 1e-3


@dataclass(frozen=True)
class LeadIntent:
    """Per-lead latent intent story, drawn before the outcome (only evaluation may read it)."""

    trend: np.ndarray
    rng: np.random.Generator

    @property
    def logit_shift(self) -> np.ndarray:
        """What the story adds to the conversion logit."""
        return TREND_CONVERSION_EFFECT * self.trend


def draw_lead_intent(seed: int, n: int) -> LeadIntent:
    """The intent latents from their own generator, so switching the story on moves no other draw."""
    rng = np.random.default_rng([seed, 21])
    return LeadIntent(trend=rng.normal(0.0, 1.0, n), rng=rng)


def simulate_lead_events(
    intent: LeadIntent,
    lead_ids: np.ndarray,
    org_id: str,
    quality: np.ndarray,
    converted: np.ndarray,
    created_day: np.ndarray,
    decided_day: np.ndarray,
    start_ts: pd.Timestamp,
    days: int,
    id_seed: int,
) -> pd.DataFrame:
    """The `lead_events` table (id, organization_id, lead_id, type, occurred_at), sorted by time."""
    rng, n = intent.rng, len(lead_ids)
    created, decided = np.asarray(created_day, float), np.asarray(decided_day, float)
    quality = np.asarray(quality, float)
    life = np.maximum(decided - created, _MIN_LIFE_DAYS)
    converted = np.asarray(converted, bool)
    window = np.where(converted, rng.gamma(2.0, HAND_RAISE_MEAN_DAYS / 2, n), rng.gamma(2.0, COLD_MEAN_DAYS / 2, n))
    boost = np.where(converted, HAND_RAISE_FACTOR, 1.0)
    # Thinning: candidates from the per-lead maximum rate, each kept with probability rate(t) / maximum.
    tilt = TREND_TILT * np.abs(intent.trend) / 2
    ceiling = BASE_RATE * np.exp(QUALITY_RATE * quality + tilt) * boost
    end = np.minimum(decided, days)
    counts = rng.poisson(ceiling * np.maximum(end - created, 0.0))
    lead = np.repeat(np.arange(n), counts)
    day = created[lead] + rng.uniform(size=lead.size) * (end - created)[lead]
    state = TREND_TILT * intent.trend[lead] * ((day - created[lead]) / life[lead] - 0.5)
    late = day >= decided[lead] - window[lead]
    factor = np.where(late, np.where(converted[lead], HAND_RAISE_FACTOR, COLD_FACTOR), 1.0)
    rate = BASE_RATE * np.exp(QUALITY_RATE * quality[lead] + state) * factor
    keep = rng.uniform(size=lead.size) * ceiling[lead] < rate
    # A hand-raise shifts the mix towards replies and forms (it is in the rate already through its factor).
    state = state + np.where(late & converted[lead], HAND_RAISE_INTENT, 0.0)
    lead, day, state = lead[keep], day[keep], state[keep]
    logits = TYPE_BASE[None, :] + TYPE_SLOPE[None, :] * state[:, None]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    kind = (rng.uniform(size=(lead.size, 1)) > np.cumsum(probs, axis=1)).sum(axis=1)
    order = np.argsort(day, kind="stable")
    lead, day, kind = lead[order], day[order], kind[order]
    return pd.DataFrame(
        {
            "id": seeded_uuids(random.Random(id_seed), len(lead)),
            "organization_id": org_id,
            "lead_id": np.asarray(lead_ids, dtype=object)[lead],
            "type": np.asarray(LEAD_EVENT_TYPES, dtype=object)[np.minimum(kind, len(LEAD_EVENT_TYPES) - 1)],
            "occurred_at": start_ts + pd.to_timedelta(day, unit="D").round("us"),
        }
    )


def add_lead_events(
    tables: CRMTables, intent: LeadIntent, lead_latent: pd.DataFrame, start_ts: pd.Timestamp, days: int, seed: int
) -> tuple[CRMTables, pd.DataFrame]:
    """The simulator's CRM with its `lead_events` table, and the lead truth with the intent latents (the creation
    and decision days `simulate_leads` kept for this story are dropped again)."""
    leads = tables.leads
    events = simulate_lead_events(
        intent,
        leads["id"].to_numpy(),
        str(leads["organization_id"].iloc[0]) if len(leads) else "",
        lead_latent["latent_quality"].to_numpy(),
        lead_latent["converted"].to_numpy(),
        lead_latent["created_day"].to_numpy(),
        lead_latent["decided_day"].to_numpy(),
        start_ts,
        days,
        id_seed=seed * 1_000 + 21,
    )
    truth = lead_latent.drop(columns=["created_day", "decided_day"])
    truth = truth.assign(intent_trend=intent.trend, intent_logit_shift=intent.logit_shift)
    return dataclasses.replace(tables, lead_events=events), truth
