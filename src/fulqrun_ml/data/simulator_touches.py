"""The simulated CRM's touches and leads (story points 5-8 in `simulator.py`), drawn for `simulate_crm`.

Touches on deals arrive as a Poisson process whose rate grows with the deal's latent quality and the rep's
effort, with a type mix that shifts toward meetings; leads arrive from sources, convert or are disqualified,
and get touches of their own. Every touch is thinned on days off (none on holidays, a share on weekends) and
given a direction (inbound with a probability growing with quality) from the side generator, so the main
stream's draws do not depend on them. `simulate_crm` calls these in a fixed order: ids stay identical per seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.calendar import calendar_dates, is_holiday, is_weekend
from fulqrun_ml.data.uuids import seeded_uuids

LEAD_SOURCE_EFFECT = {"web": -0.2, "referral": 0.8, "event": 0.2, "outbound": -0.5, "partner": 0.5}
# Share of the touches that would fall on a weekend that still happen (holidays keep none).
WEEKEND_TOUCH_SHARE = 0.1
# P(inbound) = sigmoid(base + 0.8 * quality + type effect) for calls, emails and meetings.
INBOUND_BASE = {"opportunity": -1.2, "lead": -1.0}
INBOUND_TYPE_EFFECT = {"call": -0.3, "email": 0.3, "meeting": 0.0}


@dataclass(frozen=True)
class TouchDays:
    """What touch generation needs beyond the main stream: the calendar, the side generator, the rate scale."""

    start_ts: pd.Timestamp
    holidays: np.ndarray
    side_rng: np.random.Generator
    activity_rate: float


def simulate_leads(
    rng: np.random.Generator,
    id_rng: random.Random,
    org_id: str,
    n: int,
    company_ids: list[str],
    rep_ids: list[str],
    rep_skill: np.ndarray,
    rep_effort: np.ndarray,
    days: int,
    touch_days: TouchDays,
    logit_shift: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Leads, their touches and their latent truth (see the story, points 6-8). `logit_shift` (the optional lead
    intent story, simulator_lead_events.py) moves the conversion odds; the latent truth then also keeps each
    lead's creation and decision day, which that story's events need."""
    start_ts = touch_days.start_ts
    ids = seeded_uuids(id_rng, n)
    source = rng.choice(list(LEAD_SOURCE_EFFECT), size=n, p=[0.35, 0.15, 0.15, 0.25, 0.10])
    rep = rng.integers(0, len(rep_ids), size=n)
    q = rng.normal(0.0, 1.0, size=n)
    logit = -1.1 + 1.2 * q + np.array([LEAD_SOURCE_EFFECT[s] for s in source]) + 0.3 * rep_skill[rep]
    logit = logit if logit_shift is None else logit + logit_shift
    p_convert = 1.0 / (1.0 + np.exp(-logit))
    converted = rng.uniform(size=n) < p_convert
    created = rng.uniform(0, days - 10, size=n)
    decided = created + np.where(converted, rng.gamma(3.0, 8.0, n), rng.gamma(2.0, 15.0, n))
    known = decided <= days
    status = np.where(
        ~known, np.where(rng.uniform(size=n) < 0.5, "new", "contacted"), np.where(converted, "converted", "unqualified")
    )
    has_company = rng.uniform(size=n) < 0.7
    company = np.where(has_company, np.asarray(company_ids, dtype=object)[rng.integers(0, len(company_ids), n)], None)
    leads = pd.DataFrame(
        {
            "id": ids,
            "organization_id": org_id,
            "company_id": company,
            "source": source,
            "status": status,
            # The CRM's rule-based score, rewritten when the status changes: final values, no history.
            "score": np.clip(np.round(50 + 15 * q + rng.normal(0, 10, n) + 30 * (status == "converted")), 0, 100),
            "assigned_to": np.asarray(rep_ids, dtype=object)[rep],
            "created_at": start_ts + pd.to_timedelta(created, unit="D"),
            "updated_at": start_ts + pd.to_timedelta(np.where(known, decided, created), unit="D"),
        }
    )
    end = np.minimum(decided, days)
    counts = rng.poisson(touch_days.activity_rate * 0.15 * np.exp(0.5 * q) * rep_effort[rep] * (end - created))
    lead = np.repeat(np.arange(n), counts)
    day = created[lead] + rng.uniform(size=lead.size) * (end - created)[lead]
    types = rng.choice(["call", "email", "meeting", "task"], size=lead.size, p=[0.35, 0.45, 0.1, 0.1])
    worked = _on_working_days(touch_days, day)
    lead, day, types = lead[worked], day[worked], types[worked]
    direction = _directions(touch_days.side_rng, types, INBOUND_BASE["lead"] + 0.8 * q[lead])
    acts = _activity_frame(
        id_rng,
        org_id,
        "lead",
        np.asarray(ids, dtype=object)[lead],
        np.asarray(rep_ids, dtype=object)[rep[lead]],
        types,
        day,
        direction,
    )
    latent = pd.DataFrame(
        {"lead_id": ids, "true_conversion_probability": p_convert, "latent_quality": q, "converted": converted}
    )
    if logit_shift is not None:
        latent = latent.assign(created_day=created, decided_day=decided)
    return leads, acts, latent


def simulate_deal_touches(
    rng: np.random.Generator,
    id_rng: random.Random,
    org_id: str,
    opp_ids: list[str],
    rep_ids: list[str],
    rep_idx: np.ndarray,
    rep_effort: np.ndarray,
    z: np.ndarray,
    created_days: np.ndarray,
    close_day: np.ndarray,
    enter_day: np.ndarray,
    days: int,
    touch_days: TouchDays,
) -> pd.DataFrame:
    """Touches on each deal between creation and close (or extraction), as a Poisson process, thinned on
    days off; each with a direction."""
    end = np.minimum(close_day, days)
    rate = touch_days.activity_rate * 0.22 * np.exp(0.6 * z) * rep_effort[rep_idx]
    counts = rng.poisson(rate * (end - created_days))
    deal = np.repeat(np.arange(len(opp_ids)), counts)
    day = created_days[deal] + rng.uniform(size=deal.size) * (end - created_days)[deal]
    stage_at = (enter_day[deal] <= day[:, None]).sum(axis=1) - 1
    # Type mix: meetings grow with deal quality and stage; calls and emails fill the rest.
    meeting_w = np.exp(-1.2 + 0.7 * z[deal] + 0.35 * stage_at)
    weights = np.stack(
        [
            np.full(deal.size, 1.0),
            np.full(deal.size, 1.4),
            meeting_w,
            np.full(deal.size, 0.4),
            np.full(deal.size, 0.3),
        ],
        axis=1,
    )
    cum = np.cumsum(weights / weights.sum(1, keepdims=True), axis=1)
    type_idx = (rng.uniform(size=deal.size)[:, None] > cum).sum(axis=1)
    types = np.array(["call", "email", "meeting", "task", "note"])[type_idx]
    worked = _on_working_days(touch_days, day)
    deal, day, types = deal[worked], day[worked], types[worked]
    direction = _directions(touch_days.side_rng, types, INBOUND_BASE["opportunity"] + 0.8 * z[deal])
    order = np.lexsort((day, deal))
    deal, day, types, direction = deal[order], day[order], types[order], direction[order]
    return _activity_frame(
        id_rng,
        org_id,
        "opportunity",
        np.asarray(opp_ids, dtype=object)[deal],
        np.asarray(rep_ids, dtype=object)[rep_idx[deal]],
        types,
        day,
        direction,
    )


def _on_working_days(touch_days: TouchDays, day: np.ndarray) -> np.ndarray:
    """Which touches happen: none on holidays, WEEKEND_TOUCH_SHARE of those on weekends, all others."""
    dates = calendar_dates(touch_days.start_ts, day)
    weekend_kept = touch_days.side_rng.uniform(size=day.size) < WEEKEND_TOUCH_SHARE
    return ~is_holiday(dates, touch_days.holidays) & (~is_weekend(dates) | weekend_kept)


def _directions(side_rng: np.random.Generator, types: np.ndarray, base_logit: np.ndarray) -> np.ndarray:
    """inbound / outbound per touch: calls, emails and meetings are inbound with P = sigmoid(base_logit + type
    effect); tasks and notes are the rep's own work, so outbound."""
    effect = pd.Series(types, dtype=object).map(INBOUND_TYPE_EFFECT).to_numpy(dtype=np.float64)
    inbound = side_rng.uniform(size=len(types)) < 1.0 / (1.0 + np.exp(-(base_logit + effect)))
    return np.where(inbound & ~np.isnan(effect), "inbound", "outbound").astype(object)


def _activity_frame(
    id_rng: random.Random,
    org_id: str,
    related_type: str,
    related_ids: np.ndarray,
    created_by: np.ndarray,
    types: np.ndarray,
    day: np.ndarray,
    direction: np.ndarray,
) -> pd.DataFrame:
    """Completed touches in the contract's `activities` columns (`day` becomes `created_at` later)."""
    counterpart = "prospect" if related_type == "lead" else "customer"
    return pd.DataFrame(
        {
            "id": seeded_uuids(id_rng, len(types)),
            "organization_id": org_id,
            "type": types,
            "status": "completed",
            "subject": [f"{t} with {counterpart}" for t in types],
            "description": None,
            "related_type": related_type,
            "related_id": related_ids,
            "created_by": created_by,
            "direction": direction,
            "day": day,
        }
    )
