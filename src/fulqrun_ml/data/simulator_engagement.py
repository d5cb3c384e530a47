"""Engagement dynamics for the simulated CRM (`simulate_crm(engagement="dynamic")`): touches whose timing,
direction and spacing carry what deal-intelligence products read, not only their count.

Why: with `engagement="poisson"` (the default, which keeps every existing report reproducible) touches are a
Poisson process given the deal's quality, so per-type counts are a sufficient statistic and a sequence model
cannot beat one fed counts (reports/sequence_fusion.md). Real engagement is not like that. Here, per deal:

1. **Trend.** A latent trend tau ~ N(0, 1) moves the win odds (`TREND_WIN_EFFECT`) and tilts the customer's
   engagement over the deal's life: inbound rate x exp(TREND_TILT * tau * (u - 1/2)), u = share of the life
   elapsed. Over the whole life the tilt nearly cancels, so counts say little about tau; their timing does.
2. **Going dark.** A deal that will be lost goes dark `Gamma(2, DARK_MEAN_DAYS / 2)` days before its close: inbound
   touches fall to `DARK_FACTOR` and replies stop, while the rep keeps chasing (outbound x `CHASE_FACTOR`).
3. **Reply latency.** Each outbound call or email gets an inbound email reply with probability REPLY_PROBABILITY x
   the engagement state, after Exponential(REPLY_MEAN_DAYS * exp(-0.5 z - TREND_TILT * tau * (u - 1/2))) days:
   replies of a declining deal slow down. Replies after the close or the extraction are dropped.
4. **Champion loss and re-engagement.** With `CHAMPION_LOSS_PROBABILITY` the champion leaves at u ~ U(0.2, 0.9)
   (win logit `CHAMPION_LOSS_EFFECT`); inbound falls to `CHAMPION_GONE_FACTOR`. With
   `REENGAGE_PROBABILITY` a new champion is found Gamma(2, 7) days later (logit `REENGAGE_EFFECT`): a new contact,
   an inbound intro meeting, and inbound back to `REENGAGED_FACTOR`.
5. **Stakeholders added over time** (multi-threading): Poisson(STAKEHOLDER_RATE * exp(0.5 z + 0.5 tau) * months)
   new contacts at the deal's company, later in the life more often (u = sqrt(U)); each arrives with an inbound
   meeting. A deal that went dark adds none.
6. **End-of-quarter compression.** In the last `QUARTER_PUSH_DAYS` of every quarter reps push all open deals
   (outbound x `QUARTER_PUSH_FACTOR`); a won deal closing at a quarter end also gets x `CLOSE_PLAN_FACTOR`
   inbound in its own last `QUARTER_PUSH_DAYS` (the mutual close plan).

The win logit shift of (1) and (4) is drawn before the outcome, so `oracle_win_probability` stays the Bayes
posterior given all latents; going dark (2) follows the outcome (the buyer decided), so near the close a model that
reads the trajectory can know more than that oracle. Latents come from their own generator
(`default_rng([seed, 4])`): the poisson default draws nothing here and stays byte-identical.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator_touches import TouchDays, _activity_frame, _on_working_days
from fulqrun_ml.data.uuids import seeded_uuids

ENGAGEMENT_MODES = ("poisson", "dynamic")
TREND_WIN_EFFECT = 0.8
TREND_TILT = 1.6
CHAMPION_LOSS_PROBABILITY = 0.3
CHAMPION_LOSS_EFFECT = -1.0
REENGAGE_PROBABILITY = 0.4
REENGAGE_EFFECT = 0.7
CHAMPION_GONE_FACTOR, REENGAGED_FACTOR = 0.2, 0.8
DARK_MEAN_DAYS, DARK_FACTOR, CHASE_FACTOR = 21.0, 0.1, 1.3
REPLY_PROBABILITY, REPLY_MEAN_DAYS = 0.5, 1.5
STAKEHOLDER_RATE = 0.5  # per 30 days at z = tau = 0
QUARTER_PUSH_DAYS, QUARTER_PUSH_FACTOR, CLOSE_PLAN_FACTOR = 14, 1.6, 2.0
OUTBOUND_RATE, INBOUND_RATE = 0.12, 0.07  # per day at z = tau = 0, effort 1
OUTBOUND_TYPES, OUTBOUND_P = np.array(["call", "email", "task", "note"]), np.array([0.35, 0.45, 0.12, 0.08])
STAKEHOLDER_TITLES = ("VP Finance", "Procurement Lead", "IT Security", "Head of Ops", "Director IT", "COO")


@dataclass(frozen=True)
class EngagementLatents:
    """Per-deal latent engagement story, drawn before the outcome (only evaluation may read it)."""

    trend: np.ndarray
    champion_lost: np.ndarray  # bool
    champion_lost_u: np.ndarray  # share of the life at which the champion leaves (NaN: never)
    reengaged: np.ndarray  # bool
    reengage_delay_days: np.ndarray
    dark_days: np.ndarray  # days before close a lost deal goes dark
    rng: np.random.Generator

    @property
    def logit_shift(self) -> np.ndarray:
        """What the story adds to the win logit."""
        return (
            TREND_WIN_EFFECT * self.trend
            + CHAMPION_LOSS_EFFECT * self.champion_lost
            + REENGAGE_EFFECT * (self.champion_lost & self.reengaged)
        )


def draw_engagement_latents(seed: int, n: int) -> EngagementLatents:
    """The latents of n deals from the engagement generator `default_rng([seed, 4])`."""
    rng = np.random.default_rng([seed, 4])
    trend = rng.normal(0.0, 1.0, n)
    lost = rng.uniform(size=n) < CHAMPION_LOSS_PROBABILITY
    lost_u = np.where(lost, rng.uniform(0.2, 0.9, n), np.nan)
    reengaged = lost & (rng.uniform(size=n) < REENGAGE_PROBABILITY)
    delay = rng.gamma(2.0, 7.0, n)
    dark = rng.gamma(2.0, DARK_MEAN_DAYS / 2.0, n)
    return EngagementLatents(trend, lost, lost_u, reengaged, delay, dark, rng)


def level_only_probability(logit_without_story: np.ndarray, samples: int = 2000, seed: int = 0) -> np.ndarray:
    """P(win | everything but the engagement story): the story's logit shift integrated out by Monte Carlo.

    This is the best a reader of the deal's *level* can do; the gap to the full oracle is what the trajectory
    (trend, champion) can add."""
    draws = draw_engagement_latents(seed, samples).logit_shift
    logits = np.asarray(logit_without_story, dtype=np.float64)[:, None] + draws[None, :]
    return (1.0 / (1.0 + np.exp(-logits))).mean(axis=1)


@dataclass(frozen=True)
class DealTimeline:
    """What the engagement story reads about each deal (arrays of length n, days since the simulation start)."""

    z: np.ndarray
    won: np.ndarray
    created: np.ndarray
    close: np.ndarray
    enter_day: np.ndarray  # [n, stages]
    rep_idx: np.ndarray
    company_idx: np.ndarray
    days: int


def _quarter_days_left(start_ts: pd.Timestamp, day: np.ndarray) -> np.ndarray:
    """Days from each day to the end of its calendar quarter."""
    when = pd.DatetimeIndex(start_ts.tz_localize(None) + pd.to_timedelta(day, unit="D"))
    end = (when.to_period("Q").end_time).to_numpy()
    return (end - when.to_numpy()) / np.timedelta64(1, "D")


def _thinned(rng: np.random.Generator, peak: np.ndarray, begin: np.ndarray, end: np.ndarray) -> tuple:
    """Candidate events of a Poisson process of rate `peak` per deal on [begin, end): (deal, day)."""
    counts = rng.poisson(peak * np.maximum(end - begin, 0.0))
    deal = np.repeat(np.arange(len(peak)), counts)
    return deal, begin[deal] + rng.uniform(size=deal.size) * (end - begin)[deal]


def simulate_engaged_deal_touches(
    latents: EngagementLatents,
    timeline: DealTimeline,
    id_rng: random.Random,
    org_id: str,
    opp_ids: list[str],
    rep_ids: list[str],
    rep_effort: np.ndarray,
    company_ids: list[str],
    touch_days: TouchDays,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(touch rows in `_activity_frame` shape, stakeholder contact rows) under the story in the module docstring."""
    rng = latents.rng
    tl = timeline
    days_off = dataclasses.replace(touch_days, side_rng=rng)
    scale = touch_days.activity_rate * rep_effort[tl.rep_idx]
    end = np.minimum(tl.close, tl.days)
    life = np.maximum(tl.close - tl.created, 1.0)
    dark_from = np.where(tl.won, np.inf, tl.close - latents.dark_days)
    lost_at = tl.created + latents.champion_lost_u * life  # NaN: never
    back_at = np.where(latents.reengaged, lost_at + latents.reengage_delay_days, np.nan)
    quarter_close = _quarter_days_left(touch_days.start_ts, tl.close) < 1.0

    def inbound_state(deal: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Champion and dark factors at `day` (1 = fully engaged)."""
        gone = day >= lost_at[deal]
        back = day >= back_at[deal]
        factor = np.where(gone, np.where(back, REENGAGED_FACTOR, CHAMPION_GONE_FACTOR), 1.0)
        return np.where(day >= dark_from[deal], DARK_FACTOR, factor)

    def tilt(deal: np.ndarray, day: np.ndarray) -> np.ndarray:
        return TREND_TILT * latents.trend[deal] * ((day - tl.created[deal]) / life[deal] - 0.5)

    # Outbound (rep's own work): the quarter push and chasing dark deals.
    out_peak = scale * OUTBOUND_RATE * np.exp(0.3 * tl.z) * QUARTER_PUSH_FACTOR * CHASE_FACTOR
    o_deal, o_day = _thinned(rng, out_peak, tl.created, end)
    push = np.where(_quarter_days_left(touch_days.start_ts, o_day) < QUARTER_PUSH_DAYS, QUARTER_PUSH_FACTOR, 1.0)
    chase = np.where(o_day >= dark_from[o_deal], CHASE_FACTOR, 1.0)
    keep = rng.uniform(size=o_deal.size) < push * chase / (QUARTER_PUSH_FACTOR * CHASE_FACTOR)
    o_deal, o_day = o_deal[keep], o_day[keep]
    o_type = OUTBOUND_TYPES[rng.choice(len(OUTBOUND_TYPES), size=o_deal.size, p=OUTBOUND_P)]

    # Inbound (the customer reaching out): level, trend tilt, champion, dark, close plan.
    in_peak = scale * INBOUND_RATE * np.exp(0.6 * tl.z + TREND_TILT * np.abs(latents.trend) / 2) * CLOSE_PLAN_FACTOR
    i_deal, i_day = _thinned(rng, in_peak, tl.created, end)
    plan = (tl.won & quarter_close)[i_deal] & (tl.close[i_deal] - i_day < QUARTER_PUSH_DAYS)
    rate = np.exp(tilt(i_deal, i_day) - TREND_TILT * np.abs(latents.trend[i_deal]) / 2) * inbound_state(i_deal, i_day)
    keep = rng.uniform(size=i_deal.size) < rate * np.where(plan, CLOSE_PLAN_FACTOR, 1.0) / CLOSE_PLAN_FACTOR
    i_deal, i_day = i_deal[keep], i_day[keep]
    stage_at = (tl.enter_day[i_deal] <= i_day[:, None]).sum(axis=1) - 1
    meeting = rng.uniform(size=i_deal.size) < 1.0 / (1.0 + np.exp(-(-1.0 + 0.7 * tl.z[i_deal] + 0.35 * stage_at)))
    i_type = np.where(meeting, "meeting", np.where(rng.uniform(size=i_deal.size) < 0.5, "call", "email"))

    # Replies to outbound calls and emails, slowing as a deal declines.
    asks = np.isin(o_type, ("call", "email"))
    r_deal, r_from = o_deal[asks], o_day[asks]
    replied = rng.uniform(size=r_deal.size) < REPLY_PROBABILITY * inbound_state(r_deal, r_from)
    mean = REPLY_MEAN_DAYS * np.exp(-0.5 * tl.z[r_deal] - tilt(r_deal, r_from))
    r_day = r_from + rng.exponential(mean)
    replied &= r_day < end[r_deal]
    r_deal, r_day = r_deal[replied], r_day[replied]

    # New stakeholders (later in the life more often) and re-engaged champions: a contact + an intro meeting.
    months = np.maximum(end - tl.created, 0.0) / 30.0
    s_count = rng.poisson(STAKEHOLDER_RATE * np.exp(0.5 * tl.z + 0.5 * latents.trend) * months)
    s_deal, s_day = _stakeholders(rng, tl, s_count, dark_from, end)
    back = np.flatnonzero(np.isfinite(back_at) & (back_at < end))
    c_deal, c_day = np.concatenate([s_deal, back]), np.concatenate([s_day, back_at[back]])

    deal = np.concatenate([o_deal, i_deal, r_deal, c_deal])
    day = np.concatenate([o_day, i_day, r_day, c_day])
    types = np.concatenate([o_type, i_type, np.full(r_deal.size, "email"), np.full(c_deal.size, "meeting")])
    direction = np.concatenate([np.full(o_deal.size, "outbound"), np.full(deal.size - o_deal.size, "inbound")])
    worked = _on_working_days(days_off, day)
    deal, day, types, direction = deal[worked], day[worked], types[worked], direction[worked].astype(object)
    order = np.lexsort((day, deal))
    deal, day, types, direction = deal[order], day[order], types[order], direction[order]
    activities = _activity_frame(
        id_rng,
        org_id,
        "opportunity",
        np.asarray(opp_ids, dtype=object)[deal],
        np.asarray(rep_ids, dtype=object)[tl.rep_idx[deal]],
        types,
        day,
        direction,
    )
    contacts = _contact_rows(rng, id_rng, tl, c_deal, c_day, company_ids, touch_days.start_ts)
    return activities, contacts


def _stakeholders(
    rng: np.random.Generator, tl: DealTimeline, counts: np.ndarray, dark_from: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(deal, day) of stakeholders joining: u = sqrt(U) of the life so far, none once the deal went dark."""
    deal = np.repeat(np.arange(len(counts)), counts)
    day = tl.created[deal] + np.sqrt(rng.uniform(size=deal.size)) * (end - tl.created)[deal]
    keep = day < dark_from[deal]
    return deal[keep], day[keep]


def _contact_rows(
    rng: np.random.Generator,
    id_rng: random.Random,
    tl: DealTimeline,
    deal: np.ndarray,
    day: np.ndarray,
    company_ids: list[str],
    start_ts: pd.Timestamp,
) -> pd.DataFrame:
    """Contacts rows for the stakeholders (emails and phones are PII: never features)."""
    company = tl.company_idx[deal]
    return pd.DataFrame(
        {
            "id": seeded_uuids(id_rng, deal.size),
            "company_id": np.asarray(company_ids, dtype=object)[company],
            "title": rng.choice(STAKEHOLDER_TITLES, size=deal.size),
            "email": [f"stakeholder{i:06d}@company{c:05d}.example" for i, c in enumerate(company)],
            "phone": [f"+1-555-{int(v)}" for v in rng.integers(1000, 9999, size=deal.size)],
            "created_at": start_ts + pd.to_timedelta(day, unit="D"),
        }
    )


def latent_columns(latents: EngagementLatents, timeline: DealTimeline) -> dict[str, np.ndarray]:
    """The story's latents for `SimulatedCRM.latent` (evaluation only): trend, champion loss/return day, dark day."""
    life = np.maximum(timeline.close - timeline.created, 1.0)
    lost_at = timeline.created + latents.champion_lost_u * life
    return {
        "engagement_trend": latents.trend,
        "engagement_logit_shift": latents.logit_shift,
        "champion_lost_day": lost_at,
        "champion_back_day": np.where(latents.reengaged, lost_at + latents.reengage_delay_days, np.nan),
        "dark_from_day": np.where(timeline.won, np.nan, timeline.close - latents.dark_days),
    }
