"""A seeded synthetic CRM with a known generative story, so we know the ceiling of every model.

The story (deliberately small for the walking skeleton; the data-layer issue grows it):
1. Reps have a latent skill (raises win odds) and effort (raises activity rate); each belongs to a region.
2. Companies have an industry, size band, employee count and revenue; industries and sizes shift win odds.
3. Each deal gets a latent quality z ~ N(0, 1). Its true win probability at creation is
   p = sigmoid(b + 1.3 z + 0.6 skill + industry + size - 0.25 log(value / 50k)); the outcome is Bernoulli(p).
4. Won deals walk every open stage; lost deals leave after an exit stage drawn independently of everything
   (P = EXIT_STAGE_PROBS). Stage durations depend only on value and stage, never on the outcome.
5. Activities arrive as a Poisson process whose rate grows with z and the rep's effort; the type mix
   shifts toward meetings for good deals and later stages. They carry signal about z, not about the outcome.
6. Seasonality: a deal whose final stage would end within 10 days after a quarter end is pushed to close
   on the last day of the quarter (the quarter-end push) - for won and lost deals alike. Nobody works on
   holidays (US federal, `calendar.py`): no touches and no closes then. Weekends keep 10% of the touches
   and no closes; a close landing on a day off moves to the previous working day (the next one if the deal
   had not yet entered its final stage then).
7. Leads arrive from sources (web, referral, event, outbound, partner) with a latent quality q; they
   convert with probability sigmoid(-1.1 + 1.2 q + source + 0.3 skill) after a gamma-distributed delay,
   or are disqualified; touches on leads (related_type "lead") arrive at a rate growing with q.
8. Direction: a call, email or meeting is inbound (the customer reached out) with probability growing with
   the deal's z (the lead's q); tasks and notes are the rep's own work (outbound). Signal about z again.
9. Slowly changing attributes (`simulator_history.py`): firmographic updates, industry reclassifications and
   rep territory transfers over time, kept in `company_history` / `user_history`; the `companies` / `users`
   rows hold the values at extraction. Win odds read each company's original record, so the changes carry
   no outcome signal; they exist so that reading today's row for a past snapshot is detectably wrong.
10. Drift (`simulator_drift.py`, optional): a known change (downturn, industry mix, price increase, new product
    line) applied to deals created after an onset day, for scoring monitors against a known onset.
11. Slippage (`simulator_slippage.py`): reps push expected close dates (and, if asked, correct amounts) over a
    deal's life, kept in `opportunity_history`. Competition (`simulator_competition.py`, optional): competitors
    with true win-logit effects, an entrant with a known onset, loss reasons drawn from the latent cause.
12. MEDDPICC history and notes (`simulator_meddpicc.py`, `simulator_notes.py`): each MEDDPICC element's writes
    over time (score, text, who, when) in `meddpicc_events`, ending at the opportunities row's text, and free-text
    notes on deals and leads whose tone follows z (q), with planted names, emails and phones, in `notes`.

Holiday thinning and direction draw from a second generator seeded from `seed`, so adding them left the
main stream (and every other column's draws) where it was. `activity_rate` scales both touch rates
(1.0 is the story above); the sharded writer (`simulator_scale.py`) uses it to reach ~20 touches per deal.

Because of (4), (5) and (6), the Bayes-optimal win probability of an open deal at stage k given everything
latent is p / (p + (1 - p) S(k)) with S(k) = P(exit stage >= k | lost): `oracle_win_probability`.
That is the "oracle" the report shows next to the model; it is kept out of every feature.
`simulator_dirt.inject_dirt` adds the mess real exports have (missing values, duplicates, typos, PII in free text).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.calendar import (
    holidays_between,
    roll_to_business_day,
)
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator_competition import CompetitionScenario
from fulqrun_ml.data.simulator_deal_steps import days_index, meddpicc_text, quarter_end_push, stage_walk
from fulqrun_ml.data.simulator_drift import DriftScenario
from fulqrun_ml.data.simulator_engagement import (
    ENGAGEMENT_MODES,
    DealTimeline,
    draw_engagement_latents,
    latent_columns,
    simulate_engaged_deal_touches,
)
from fulqrun_ml.data.simulator_history import simulate_company_history, simulate_user_history
from fulqrun_ml.data.simulator_lead_events import add_lead_events, draw_lead_intent
from fulqrun_ml.data.simulator_lifecycle import LifecycleTruth, simulate_lifecycle
from fulqrun_ml.data.simulator_notes import simulate_text_tables
from fulqrun_ml.data.simulator_products import ProductStory
from fulqrun_ml.data.simulator_slippage import SlippageStory, simulate_opportunity_history
from fulqrun_ml.data.simulator_touches import TouchDays, simulate_deal_touches, simulate_leads
from fulqrun_ml.data.uuids import seeded_uuids
from fulqrun_ml.data.vocabulary import OPEN_STAGES, PEAK_STAGE_OF, STAGE_DEFAULT_PROBABILITY

INDUSTRY_EFFECT = {
    "software": 0.35,
    "financial_services": 0.1,
    "healthcare": -0.15,
    "manufacturing": -0.05,
    "retail": -0.3,
    "education": 0.15,
}
SIZE_EFFECT = {"smb": 0.25, "mid_market": 0.0, "enterprise": -0.35}
SIZE_EMPLOYEES = {"smb": (10, 200), "mid_market": (200, 2000), "enterprise": (2000, 50000)}
REGIONS = ("north_america", "emea", "apac", "latam")
COUNTRIES = {
    "north_america": ("US", "CA"),
    "emea": ("GB", "DE", "FR"),
    "apac": ("AU", "JP", "SG"),
    "latam": ("BR", "MX"),
}
# P(a lost deal leaves after stage k), k over OPEN_STAGES.
EXIT_STAGE_PROBS = np.array([0.35, 0.30, 0.20, 0.15])
MEAN_STAGE_DAYS = np.array([12.0, 18.0, 20.0, 14.0])
FIRST_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo")
LAST_NAMES = ("Silva", "Okafor", "Novak", "Tanaka", "Berg", "Haddad", "Kowalski", "Moreau")


@dataclass(frozen=True)
class SimulatedCRM:
    """The CRM tables plus the latent truth, which only evaluation may read."""

    tables: CRMTables
    latent: pd.DataFrame  # opportunity_id, true_win_probability, latent_quality, exit_stage_index, won
    lead_latent: pd.DataFrame | None = None  # lead_id, true_conversion_probability, latent_quality, converted
    lifecycle_truth: LifecycleTruth | None = None  # true stage transitions and expected CSAT (lifecycle=True)


def oracle_win_probability(true_win_probability: np.ndarray, stage_index: np.ndarray) -> np.ndarray:
    """Bayes posterior P(win | latent truth, deal still open at stage k) under the simulator's story."""
    survival = np.concatenate([[1.0], 1.0 - np.cumsum(EXIT_STAGE_PROBS)[:-1]])
    s = survival[np.asarray(stage_index, dtype=int)]
    p = np.asarray(true_win_probability, dtype=float)
    return p / (p + (1.0 - p) * s)


def simulate_crm(
    n_opportunities: int = 4000,
    n_reps: int = 24,
    n_companies: int = 800,
    start: str = "2024-01-01",
    days: int = 730,
    seed: int = 7,
    n_leads: int | None = None,
    activity_rate: float = 1.0,
    organization_name: str = "Simulated Org",
    drift: DriftScenario | None = None,
    competition: CompetitionScenario | None = None,
    products: ProductStory | None = None,
    slippage: SlippageStory | None = None,
    engagement: str = "poisson",
    lifecycle: bool = False,
    lead_events: bool = False,
) -> SimulatedCRM:
    """Generate a deterministic CRM: same arguments, same tables, byte for byte. `engagement="dynamic"` swaps the
    deal touches for the engagement story of `simulator_engagement.py` (trend, going dark, replies, champions,
    stakeholders, quarter push); the default "poisson" is the story above, unchanged. `lead_events=True` adds the
    lead intent story (`simulator_lead_events.py`: the `lead_events` table, conversion moved by the intent trend)."""
    if activity_rate <= 0:
        raise ValueError(f"activity_rate must be positive, got {activity_rate}")
    if engagement not in ENGAGEMENT_MODES:
        raise ValueError(f"engagement must be one of {ENGAGEMENT_MODES}, got {engagement!r}")
    rng = np.random.default_rng(seed)
    id_rng = random.Random(seed)
    # Holidays and direction draw here, so the main stream `rng` is the same as before they existed.
    side_rng = np.random.default_rng([seed, 1])
    market_rng = np.random.default_rng([seed, 16])  # competition (optional), drawn only when asked for
    start_ts = pd.Timestamp(start, tz="UTC")
    extracted_at = start_ts + pd.Timedelta(days=days)
    holidays = holidays_between(start_ts, extracted_at)

    org_id = seeded_uuids(id_rng, 1)[0]
    organizations = pd.DataFrame({"id": [org_id], "name": [organization_name], "created_at": [start_ts]})

    # Reps and managers
    n_managers = max(1, n_reps // 6)
    manager_ids = seeded_uuids(id_rng, n_managers)
    rep_ids = seeded_uuids(id_rng, n_reps)
    manager_region = rng.choice(REGIONS, size=n_managers)
    rep_manager = rng.integers(0, n_managers, size=n_reps)
    users = pd.DataFrame(
        {
            "id": manager_ids + rep_ids,
            "organization_id": org_id,
            "role": ["manager"] * n_managers + ["rep"] * n_reps,
            "manager_id": [None] * n_managers + [manager_ids[m] for m in rep_manager],
            "region": list(manager_region) + [manager_region[m] for m in rep_manager],
            "created_at": start_ts - pd.Timedelta(days=365),
        }
    )
    rep_skill = rng.normal(0.0, 1.0, size=n_reps)
    rep_effort = np.exp(rng.normal(0.0, 0.3, size=n_reps))
    rep_region = np.array([manager_region[m] for m in rep_manager])

    # Companies
    company_ids = seeded_uuids(id_rng, n_companies)
    industries = rng.choice(list(INDUSTRY_EFFECT), size=n_companies)
    sizes = rng.choice(list(SIZE_EFFECT), size=n_companies, p=[0.5, 0.35, 0.15])
    employees = np.array([int(rng.integers(*SIZE_EMPLOYEES[s])) for s in sizes])
    company_region = rng.choice(REGIONS, size=n_companies)
    companies = pd.DataFrame(
        {
            "id": company_ids,
            "organization_id": org_id,
            "name": [f"Company {i:05d}" for i in range(n_companies)],
            "industry": industries,
            "size": sizes,
            "annual_revenue": np.round(employees * rng.lognormal(np.log(150_000), 0.4, n_companies), 2),
            "employee_count": employees,
            "country": [rng.choice(COUNTRIES[r]) for r in company_region],
            "created_at": start_ts - pd.Timedelta(days=180),
        }
    )

    # One contact per company (names, emails and phones are PII: never features)
    first = rng.choice(FIRST_NAMES, size=n_companies)
    last = rng.choice(LAST_NAMES, size=n_companies)
    contacts = pd.DataFrame(
        {
            "id": seeded_uuids(id_rng, n_companies),
            "company_id": company_ids,
            "title": rng.choice(["VP Sales", "CFO", "CTO", "Head of Ops", "Director IT"], size=n_companies),
            "email": [
                f"{f.lower()}.{s.lower()}@company{i:05d}.example"
                for i, (f, s) in enumerate(zip(first, last, strict=False))
            ],
            "phone": [f"+1-555-{rng.integers(1000, 9999)}" for _ in range(n_companies)],
            "created_at": start_ts - pd.Timedelta(days=180),
        }
    )

    # Opportunities: latent quality, true probability, outcome, stage walk
    n = n_opportunities
    opp_ids = seeded_uuids(id_rng, n)
    company_idx = rng.integers(0, n_companies, size=n)
    rep_idx = rng.integers(0, n_reps, size=n)
    created_days = rng.uniform(0, days - 20, size=n)
    value = np.round(rng.lognormal(np.log(40_000), 0.9, size=n), 2)
    z = rng.normal(0.0, 1.0, size=n)
    drift_shift, drifted = np.zeros(n), np.zeros(n, dtype=bool)
    if drift is not None:  # its own generator: without drift, every draw is what it always was
        company_idx, value, drift_shift, drifted = drift.apply(
            np.random.default_rng([seed, 3]), created_days, company_idx, value, industries
        )
    story = draw_engagement_latents(seed, n) if engagement == "dynamic" else None  # its own generator
    market = None if competition is None else competition.draw(market_rng, created_days, company_region[company_idx])
    # Products (simulator_products.py, optional): own generator, drawn only when asked for.
    sold = (
        None
        if products is None
        else products.draw(np.random.default_rng([seed, 18]), industries[company_idx], sizes[company_idx])
    )
    logit = (
        (0.0 if story is None else story.logit_shift)
        + drift_shift
        - 0.4
        + 1.3 * z
        + 0.6 * rep_skill[rep_idx]
        + np.array([INDUSTRY_EFFECT[i] for i in industries[company_idx]])
        + np.array([SIZE_EFFECT[s] for s in sizes[company_idx]])
        - 0.25 * np.log(value / 50_000)
        + (0.0 if market is None else market.shift)
        + (0.0 if sold is None else sold.shift)
    )
    p_true = 1.0 / (1.0 + np.exp(-logit))
    won = rng.uniform(size=n) < p_true
    exit_stage = rng.choice(len(OPEN_STAGES), size=n, p=EXIT_STAGE_PROBS)
    last_stage = np.where(won, len(OPEN_STAGES) - 1, exit_stage)
    value_slowdown = 1.0 + 0.15 * np.log1p(value / 50_000)
    durations = rng.gamma(shape=3.0, scale=1.0 / 3.0, size=(n, len(OPEN_STAGES))) * MEAN_STAGE_DAYS
    durations *= value_slowdown[:, None]
    enter_day = created_days[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(durations, 1)[:, :-1]], 1)
    last_stage_start = enter_day[np.arange(n), last_stage]
    close_day = quarter_end_push(last_stage_start + durations[np.arange(n), last_stage], last_stage_start, start_ts)
    close_day = roll_to_business_day(close_day, start_ts, holidays, after=last_stage_start)

    # Stage history: every change that happened before extraction
    hist = stage_walk(opp_ids, last_stage, won, enter_day, close_day)
    hist = hist[hist["day"] <= days].reset_index(drop=True)
    stage_history = pd.DataFrame(
        {
            "opportunity_id": hist["opportunity_id"],
            "from_stage": hist["from_stage"],
            "to_stage": hist["to_stage"],
            "changed_at": start_ts + days_index(hist["day"].to_numpy()),
        }
    )
    current = stage_history.groupby("opportunity_id", sort=False).tail(1).set_index("opportunity_id")
    stage_now = current["to_stage"].reindex(opp_ids).to_numpy()
    updated_at = current["changed_at"].reindex(opp_ids)

    is_closed = np.isin(stage_now, ["closed_won", "closed_lost"])
    # Open deals carry the rep's expected close date; closed ones the real one.
    expected_close = created_days + MEAN_STAGE_DAYS.sum() * value_slowdown
    opportunity_history, expected_now = simulate_opportunity_history(
        np.random.default_rng([seed, 17]), opp_ids, created_days, expected_close - created_days, close_day,
        np.where(last_stage >= 2, enter_day[:, 2], np.nan), value, days, start_ts, slippage or SlippageStory(),
    )  # fmt: skip
    close_date_day = np.where(is_closed, close_day, expected_now)
    loss_cause, loss_reason = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    if competition is not None and market is not None:
        fit = np.array(
            [
                INDUSTRY_EFFECT[i] + SIZE_EFFECT[s]
                for i, s in zip(industries[company_idx], sizes[company_idx], strict=True)
            ]
        )
        loss_cause, loss_reason = competition.loss_reasons(
            market_rng, ~won, 1.3 * z, market.shift, -0.25 * np.log(value / 50_000), fit
        )
    meddpicc = meddpicc_text(rng, z, first[company_idx], last[company_idx])
    opportunities = pd.DataFrame(
        {
            "id": opp_ids,
            "organization_id": org_id,
            "company_id": [company_ids[c] for c in company_idx],
            "contact_id": contacts["id"].to_numpy()[company_idx],
            "assigned_to": [rep_ids[r] for r in rep_idx],
            "stage": stage_now,
            "peak_stage": [PEAK_STAGE_OF[s] for s in stage_now],
            "value": value,
            "probability": [STAGE_DEFAULT_PROBABILITY[s] for s in stage_now],
            "close_date": start_ts + days_index(close_date_day),
            "created_at": start_ts + days_index(created_days),
            "updated_at": updated_at.to_numpy(),
            **meddpicc,
            "competitor": "unknown" if market is None else market.competitor,
            "loss_reason": "unknown" if market is None else np.where(stage_now == "closed_lost", loss_reason, None),
            "product": "unknown" if sold is None else sold.product,
        }
    )

    touch_days = TouchDays(start_ts, holidays, side_rng, activity_rate)
    timeline = DealTimeline(z, won, created_days, close_day, enter_day, rep_idx, company_idx, days)
    if story is None:
        activities = simulate_deal_touches(
            rng,
            id_rng,
            org_id,
            opp_ids,
            rep_ids,
            rep_idx,
            rep_effort,
            z,
            created_days,
            close_day,
            enter_day,
            days,
            touch_days,
        )
    else:
        activities, stakeholders = simulate_engaged_deal_touches(
            story, timeline, id_rng, org_id, opp_ids, rep_ids, rep_effort, company_ids, touch_days
        )
    n_leads = n_opportunities if n_leads is None else n_leads
    intent = draw_lead_intent(seed, n_leads) if lead_events else None  # its own generator
    shift = None if intent is None else intent.logit_shift
    leads, lead_acts, lead_latent = simulate_leads(
        rng, id_rng, org_id, n_leads, company_ids, rep_ids, rep_skill, rep_effort, days, touch_days, shift
    )
    activities = pd.concat([activities, lead_acts], ignore_index=True).sort_values("day", kind="stable")
    activities = activities.reset_index(drop=True)
    activities["created_at"] = start_ts + days_index(activities.pop("day").to_numpy())
    activities["due_date"] = activities["created_at"] + pd.Timedelta(days=2)
    activities["direction"] = activities.pop("direction")

    latent = pd.DataFrame(
        {
            "opportunity_id": opp_ids,
            "true_win_probability": p_true,
            "latent_quality": z,
            "exit_stage_index": exit_stage,
            "won": won,
            "drifted": drifted,
            "rep_region": rep_region[rep_idx],
            **({} if market is None else {"competitor_effect": market.shift, "loss_cause": loss_cause}),
            **({} if sold is None else {"product_effect": sold.shift}),
            **({} if market is None else {"account_region": company_region[company_idx]}),
            **({} if story is None else latent_columns(story, timeline)),
        }
    )
    # Own generator, drawn last: the changes leave every other table (and the main stream) as it was.
    history_rng = np.random.default_rng([seed, 2])
    companies, company_history = simulate_company_history(companies, list(INDUSTRY_EFFECT), extracted_at, history_rng)
    users, user_history = simulate_user_history(users, REGIONS, start_ts, extracted_at, history_rng)
    # MEDDPICC writes and notes (simulator_meddpicc.py, simulator_notes.py), from their own generators.
    contact_names = np.array([f"{f} {s}" for f, s in zip(first, last, strict=True)], dtype=object)
    meddpicc_events, notes = simulate_text_tables(
        seed, opportunities, contacts, contact_names, leads, lead_latent, z, np.minimum(close_day, days), start_ts, days
    )
    if story is not None:  # after the tables above, which read one contact per company
        contacts = pd.concat([contacts, stakeholders], ignore_index=True)
    tables = CRMTables(
        organizations=organizations,
        users=users,
        companies=companies,
        contacts=contacts,
        opportunities=opportunities,
        activities=activities,
        stage_history=stage_history,
        extracted_at=extracted_at,
        leads=leads,
        company_history=company_history,
        user_history=user_history,
        meddpicc_events=meddpicc_events,
        notes=notes,
        opportunity_history=opportunity_history,
    )
    if intent is not None:  # the optional lead intent story (simulator_lead_events.py)
        tables, lead_latent = add_lead_events(tables, intent, lead_latent, start_ts, days, seed)
    truth = None
    if lifecycle:  # account stages and CSAT surveys (simulator_lifecycle.py), from generators of their own
        states, surveys, truth = simulate_lifecycle(seed, tables)
        tables = dataclasses.replace(tables, account_states=states, surveys=surveys)
    return SimulatedCRM(tables=tables, latent=latent, lead_latent=lead_latent, lifecycle_truth=truth)
