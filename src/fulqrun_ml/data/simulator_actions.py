"""A causal world of sales actions on top of the simulated CRM: true effects, a confounded history, rollouts.

Why: a recommender is only as good as the effects it estimates, and on real data nobody knows the true effect
of a demo or a proposal. Here every action has a known, heterogeneous effect, the historical policy that chose
the logged actions is confounded by the deal's latent quality (as real reps are), and any deal can be rolled
forward from its decision date under another action with the same noise (common random numbers), so a policy's
true value is measured, not estimated. `simulate_crm` is untouched: the world is built *from* its output with
its own generator (`default_rng([seed, 5])`). The story and every effect size: docs/simulator.md, "Actions and
causal effects".

An action has four components (each a small categorical): type x channel, the gap before the touch, the
weekday/hour slot, and a content item from `CONTENT_CATALOGUE`. True effects are additive over components on the
deal's latent quality z (win log-odds move by LOGIT_PER_Z per unit of z, as in `simulate_crm`) and on the log of
the remaining time to close. They depend on stage, industry, company size and MEDDPICC gaps only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.history import attributes_as_of
from fulqrun_ml.data.simulator import SimulatedCRM, oracle_win_probability
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS, OPEN_STAGES

LOGIT_PER_Z = 1.3  # the coefficient of z in simulate_crm's win logit
TYPE_CHANNELS = (
    "email/email",  # the reference arm of this component: a routine follow-up email
    "call/phone",
    "meeting/video",
    "meeting/in_person",
    "demo/video",
    "demo/in_person",
    "proposal/email",
    "proposal/in_person",
)
GAPS = ("3_7_days", "next_day", "8_14_days")  # time from the decision to the touch
SLOTS = ("weekday_afternoon", "weekday_morning")
# Content items: (name, topic, industry it is written for or None, stages it is written for)
CONTENT_CATALOGUE = (
    ("none", "none", None, ()),
    ("roi_calculator_finserv", "roi", "financial_services", ("proposal", "negotiation")),
    ("security_whitepaper_health", "security", "healthcare", ("prospecting", "qualifying")),
    ("case_study_software", "case_study", "software", OPEN_STAGES),
    ("case_study_manufacturing", "case_study", "manufacturing", OPEN_STAGES),
    ("retail_playbook", "playbook", "retail", ("prospecting", "qualifying")),
    ("implementation_guide", "implementation", None, ("proposal", "negotiation")),
)
CONTENT = tuple(item[0] for item in CONTENT_CATALOGUE)
# The components in action-array column order; the first arm of each is its reference.
COMPONENTS: dict[str, tuple[str, ...]] = {"type_channel": TYPE_CHANNELS, "gap": GAPS, "slot": SLOTS, "content": CONTENT}
# The deal-state columns a decision sees (all recorded in the CRM at as_of); none of them is actionable.
STATE_COLUMNS = (
    "stage",
    "industry",
    "size",
    "value",
    "meddpicc_gaps",
    "champion_missing",
    "age_days",
    "days_in_stage",
    "days_since_last_touch",
    "touches_30d",
    "meetings_30d",
    "inbound_share_30d",
)


def deal_states(tables: CRMTables, as_of: pd.Timestamp, ids: np.ndarray | None = None) -> pd.DataFrame:
    """The state of every deal open at `as_of` (or of `ids` among them), from rows at or before `as_of` only:
    stage, company industry and size as of then (history tables when present), value, MEDDPICC gaps, age, time in
    stage and recent touches. MEDDPICC text has no history in the contract, so its gaps are today's."""
    history = tables.stage_history[tables.stage_history["changed_at"] <= as_of]
    last = history.sort_values("changed_at", kind="stable").drop_duplicates("opportunity_id", keep="last")
    last = last[last["to_stage"].isin(OPEN_STAGES)].set_index("opportunity_id")
    if ids is not None:
        last = last.reindex([i for i in ids if i in last.index])
    opps = tables.opportunities.drop_duplicates("id").set_index("id").reindex(last.index)
    firms = attributes_as_of(tables, "company_history", opps["company_id"].to_numpy(), as_of).values
    acts = tables.activities
    acts = acts[(acts["related_type"] == "opportunity") & (acts["created_at"] <= as_of)]
    acts = acts[acts["related_id"].isin(last.index)]
    recent = acts[acts["created_at"] > as_of - pd.Timedelta(days=30)]
    by_deal = recent.groupby("related_id")
    touches = by_deal.size().reindex(last.index, fill_value=0).to_numpy(dtype=float)
    meetings = by_deal["type"].apply(lambda t: (t == "meeting").sum()).reindex(last.index, fill_value=0)
    inbound = by_deal["direction"].apply(lambda d: (d == "inbound").sum()).reindex(last.index, fill_value=0)
    last_touch = acts.groupby("related_id")["created_at"].max().reindex(last.index)
    days = lambda delta: delta.dt.total_seconds().to_numpy() / 86400.0  # noqa: E731 - one conversion
    created = opps["created_at"]
    since_touch = days(pd.Series(as_of - last_touch.fillna(created).to_numpy()))
    gaps = sum(opps[f].isna().to_numpy(dtype=float) for f in MEDDPICC_FIELDS)
    return pd.DataFrame(
        {
            "opportunity_id": last.index.to_numpy(),
            "as_of": as_of,
            "stage": last["to_stage"].to_numpy(),
            "industry": firms["industry"].astype(str).to_numpy(),
            "size": firms["size"].astype(str).to_numpy(),
            "value": opps["value"].to_numpy(dtype=float),
            "meddpicc_gaps": gaps,
            "champion_missing": opps["champion"].isna().to_numpy(dtype=float),
            "age_days": days(pd.Series(as_of - created.to_numpy())),
            "days_in_stage": days(pd.Series(as_of - last["changed_at"].to_numpy())),
            "days_since_last_touch": since_touch,
            "touches_30d": touches,
            "meetings_30d": meetings.to_numpy(dtype=float),
            "inbound_share_30d": inbound.to_numpy(dtype=float) / np.maximum(touches, 1.0),
        }
    )


def _flags(states: pd.DataFrame) -> dict[str, np.ndarray]:
    stage = states["stage"].to_numpy()
    size = states["size"].to_numpy()
    return {
        "early": np.isin(stage, OPEN_STAGES[:2]).astype(float),
        "late": np.isin(stage, OPEN_STAGES[2:]).astype(float),
        "smb": (size == "smb").astype(float),
        "ent": (size == "enterprise").astype(float),
        "gap_share": states["meddpicc_gaps"].to_numpy(dtype=float) / len(MEDDPICC_FIELDS),
        "no_champion": states["champion_missing"].to_numpy(dtype=float),
        "cold": (states["days_since_last_touch"].to_numpy(dtype=float) > 14).astype(float),
        "software": (states["industry"].to_numpy() == "software").astype(float),
    }


def true_effects(states: pd.DataFrame) -> dict[str, np.ndarray]:
    """delta z per component and arm, [N, n_arms] each: the true effect on the deal's latent quality."""
    f = _flags(states)
    e, lt, smb, ent, gs, nc = f["early"], f["late"], f["smb"], f["ent"], f["gap_share"], f["no_champion"]
    type_channel = np.stack(
        [
            0.02 + 0 * e,
            0.05 + 0.10 * smb - 0.05 * ent,
            0.08 + 0.20 * gs,
            0.05 + 0.30 * gs + 0.15 * ent - 0.10 * smb,
            0.25 * e - 0.05 * lt + 0.10 * f["software"],
            0.20 * e - 0.05 * lt + 0.12 * ent - 0.08 * smb,
            0.22 * lt - 0.20 * e - 0.15 * nc,
            0.28 * lt - 0.25 * e + 0.08 * ent - 0.15 * nc,
        ],
        axis=1,
    )
    gap = np.stack([0 * e, 0.06 * lt + 0.04 * f["cold"] - 0.05 * smb * e, -0.08 - 0.06 * lt - 0.04 * f["cold"]], axis=1)
    slot = np.stack([0 * e, 0.03 + 0.04 * ent], axis=1)
    return {"type_channel": type_channel, "gap": gap, "slot": slot, "content": _content_effects(states)}


def _content_effects(states: pd.DataFrame) -> np.ndarray:
    """+0.12 for the deal's own industry, -0.04 for another industry's item, +0.03 for a generic item, +0.08
    when written for the deal's stage; "none" is 0."""
    industry, stage = states["industry"].to_numpy(), states["stage"].to_numpy()
    columns = [np.zeros(len(states))]
    for _, _, item_industry, item_stages in CONTENT_CATALOGUE[1:]:
        fit = 0.03 if item_industry is None else np.where(industry == item_industry, 0.12, -0.04)
        columns.append(fit + 0.08 * np.isin(stage, item_stages))
    return np.stack(columns, axis=1)


def true_speed(states: pd.DataFrame) -> dict[str, np.ndarray]:
    """Effect on the log of the remaining time to close (positive: faster), per component and arm."""
    f = _flags(states)
    e, lt = f["early"], f["late"]
    zero = 0 * e
    type_channel = np.stack([-0.05 + zero, zero, zero, 0.05 + zero, zero, 0.15 * e, 0.2 * lt, 0.2 * lt], axis=1)
    content = np.stack([zero] * (len(CONTENT) - 1) + [0.10 * lt], axis=1)
    return {
        "type_channel": type_channel,
        "gap": np.stack([zero, 0.10 + zero, -0.15 + zero], axis=1),
        "slot": np.stack([zero, zero], axis=1),
        "content": content,
    }


def _pick(table: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
    rows = np.arange(len(actions))
    return sum(table[c][rows, actions[:, j]] for j, c in enumerate(COMPONENTS))


@dataclass(frozen=True)
class ActionWorld:
    """One decision per deal: its state at `as_of`, the logged action and outcome, and the hidden truth.

    `states` and `logged_action` / `won` / `cycle_days` are what a CRM would record; `p_open` (the oracle win
    probability at as_of with no action effect), `z`, `propensity` and the shared noise `u_win`, `remaining_days`
    are the latent truth, for evaluation only."""

    states: pd.DataFrame
    logged_action: np.ndarray  # [N, 4] arm index per component (COMPONENTS order)
    won: np.ndarray
    cycle_days: np.ndarray
    p_open: np.ndarray
    z: np.ndarray
    propensity: np.ndarray  # the logging policy's true probability of the logged action
    u_win: np.ndarray
    remaining_days: np.ndarray

    def win_probability(self, actions: np.ndarray) -> np.ndarray:
        """The true P(win) of each deal under `actions` (noise-free)."""
        logit = np.log(self.p_open / (1 - self.p_open)) + LOGIT_PER_Z * _pick(true_effects(self.states), actions)
        return 1.0 / (1.0 + np.exp(-logit))

    def rollout(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Roll every deal forward from as_of under `actions` with the shared noise: (won, cycle days)."""
        actions = np.asarray(actions, dtype=int)
        won = self.u_win < self.win_probability(actions)
        remaining = self.remaining_days * np.exp(-_pick(true_speed(self.states), actions))
        return won, self.states["age_days"].to_numpy() + remaining


def oracle_actions(states: pd.DataFrame) -> np.ndarray:
    """The action with the largest true win effect (effects are additive, so per-component argmax)."""
    return np.stack([table.argmax(axis=1) for table in true_effects(states).values()], axis=1)


def rules_actions(states: pd.DataFrame) -> np.ndarray:
    """The stage playbook a CRM ships (Einstein-style rules): call, then meeting, then proposal by email, then
    a proposal in person, next day in negotiation, mornings, the deal's industry case study where one exists."""
    stage = pd.Series(states["stage"]).map({s: i for i, s in enumerate(OPEN_STAGES)}).to_numpy()
    play = np.array([TYPE_CHANNELS.index(a) for a in ("call/phone", "meeting/video", "proposal/email")])
    type_channel = np.where(stage == 3, TYPE_CHANNELS.index("proposal/in_person"), play[np.minimum(stage, 2)])
    gap = np.where(stage == 3, GAPS.index("next_day"), GAPS.index("3_7_days"))
    case = {
        "software": CONTENT.index("case_study_software"),
        "manufacturing": CONTENT.index("case_study_manufacturing"),
    }
    content = pd.Series(states["industry"]).map(case).fillna(0).to_numpy(dtype=int)
    return np.stack([type_channel, gap, np.ones(len(states), dtype=int), content], axis=1)


# How the logging reps lean, per component arm, on what they can see and the data cannot (z): good deals get
# in-person meetings, demos and proposals, sooner, with content; weak ones get emails, later.
_Z_LEAN = {
    "type_channel": np.array([-1.0, -0.5, 0.0, 0.8, 0.3, 0.8, 0.2, 0.8]),
    "gap": np.array([0.0, 0.7, -0.7]),
    "slot": np.array([0.0, 0.2]),
    "content": np.array([-0.5, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]),
}
_HABIT = {  # base log-odds by early/late stage
    "type_channel": (
        np.array([1.0, 1.0, 0.6, 0.0, 0.3, -0.3, -0.8, -1.2]),
        np.array([0.8, 0.3, 0.3, 0.0, 0.0, -0.3, 0.8, 0.3]),
    ),
    "gap": (np.array([0.5, 0.0, 0.0]), np.array([0.5, 0.2, -0.3])),
    "slot": (np.zeros(2), np.zeros(2)),
    "content": (np.array([1.5, 0, 0, 0, 0, 0, 0.0]), np.array([1.5, 0, 0, 0, 0, 0, 0.0])),
}
CONFOUNDING = 0.8  # weight of the rep's perceived quality in the choice
HIDDEN = 0.3  # share of the perceived quality that is z itself, which the data does not record
KNOWLEDGE = 3.0  # weight of the true effect in the reps' choice (they know part of what works)


def perceived_quality(states: pd.DataFrame, z: np.ndarray, hidden: float = HIDDEN) -> np.ndarray:
    """What a rep reads a deal's quality from: engagement the CRM records (recent touches, inbound share, meetings,
    MEDDPICC filled), each standardised, plus `hidden` x z, which only the rep sees (the unrecorded confounder)."""
    signals = [
        np.log1p(states["touches_30d"].to_numpy(dtype=float)),
        states["inbound_share_30d"].to_numpy(dtype=float),
        np.log1p(states["meetings_30d"].to_numpy(dtype=float)),
        -states["meddpicc_gaps"].to_numpy(dtype=float),
    ]
    recorded = sum((v - v.mean()) / (v.std() or 1.0) for v in signals) / 2.0
    return (1 - hidden) * recorded + hidden * z


def historical_propensities(
    states: pd.DataFrame, z: np.ndarray, confounding: float = CONFOUNDING, hidden: float = HIDDEN
) -> dict[str, np.ndarray]:
    """The logging reps' choice probabilities per component, [N, n_arms] each: habit by stage, partial
    knowledge of the true effects, and a lean on the quality they perceive (confounding: the recorded
    engagement is itself driven by z, and `hidden` of it is z directly)."""
    early = _flags(states)["early"][:, None]
    effects = true_effects(states)
    quality = perceived_quality(states, z, hidden)
    out = {}
    for c in COMPONENTS:
        habit_early, habit_late = _HABIT[c]
        logits = early * habit_early + (1 - early) * habit_late + KNOWLEDGE * effects[c]
        logits = logits + confounding * quality[:, None] * _Z_LEAN[c]
        logits -= logits.max(axis=1, keepdims=True)
        out[c] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return out


def draw_actions(rng: np.random.Generator, propensities: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One action per deal from independent per-component probabilities; returns (actions, P(action))."""
    actions, prob = [], np.ones(len(next(iter(propensities.values()))))
    for c in COMPONENTS:
        cumulative = propensities[c].cumsum(axis=1)
        pick = (rng.uniform(size=(len(cumulative), 1)) > cumulative).sum(axis=1).clip(max=cumulative.shape[1] - 1)
        actions.append(pick)
        prob = prob * propensities[c][np.arange(len(pick)), pick]
    return np.stack(actions, axis=1), prob


def simulate_action_world(
    crm: SimulatedCRM,
    seed: int = 0,
    grid_days: int = 14,
    policy: str = "historical",
    confounding: float = CONFOUNDING,
    hidden: float = HIDDEN,
) -> ActionWorld:
    """One decision per deal closed by extraction: a date on a `grid_days` grid while it was open, its state
    then, an action drawn by `policy` (historical: confounded reps; random: uniform) and its outcome rolled from
    the CRM's own: the uniform `u_win` is coupled to the recorded outcome (U(0, p) for a win, U(p, 1) for a
    loss, p the open deal's win probability), so a zero effect reproduces the CRM."""
    if policy not in ("historical", "random"):
        raise ValueError(f"policy must be 'historical' or 'random', got {policy!r}")
    rng = np.random.default_rng([seed, 5])
    tables = crm.tables
    closes = tables.stage_history[tables.stage_history["to_stage"].isin(["closed_won", "closed_lost"])]
    close_at = closes.set_index("opportunity_id")["changed_at"]
    opps = tables.opportunities.set_index("id").loc[close_at.index]
    start = tables.organizations["created_at"].iloc[0] + pd.Timedelta(days=30)
    grid = pd.date_range(start, tables.extracted_at, freq=f"{grid_days}D").as_unit("ns")
    created_i = grid.searchsorted(pd.DatetimeIndex(opps["created_at"]).as_unit("ns"))
    close_i = grid.searchsorted(pd.DatetimeIndex(close_at).as_unit("ns")) - 1
    has_date = close_i >= created_i
    pick = created_i + np.floor(rng.uniform(size=len(opps)) * (close_i - created_i + 1)).astype(int)
    frames = []
    for i in np.unique(pick[has_date]):
        ids = opps.index.to_numpy()[has_date & (pick == i)]
        frames.append(deal_states(tables, grid[i], ids))
    states = pd.concat(frames, ignore_index=True)
    latent = crm.latent.set_index("opportunity_id").loc[states["opportunity_id"]]
    stage_index = states["stage"].map({s: i for i, s in enumerate(OPEN_STAGES)}).to_numpy()
    p_open = oracle_win_probability(latent["true_win_probability"].to_numpy(), stage_index)
    recorded_win = latent["won"].to_numpy()
    u = rng.uniform(size=len(states))
    u_win = np.where(recorded_win, u * p_open, p_open + u * (1 - p_open))
    remaining = (close_at.loc[states["opportunity_id"]].to_numpy() - states["as_of"].to_numpy()) / pd.Timedelta(days=1)
    z = latent["latent_quality"].to_numpy()
    if policy == "historical":
        propensities = historical_propensities(states, z, confounding, hidden)
    else:
        propensities = {c: np.full((len(states), len(arms)), 1.0 / len(arms)) for c, arms in COMPONENTS.items()}
    actions, propensity = draw_actions(rng, propensities)
    world = ActionWorld(
        states,
        actions,
        recorded_win,
        np.zeros(len(states)),
        p_open,
        z,
        propensity,
        u_win,
        np.asarray(remaining, dtype=float),
    )
    won, cycle = world.rollout(actions)
    return ActionWorld(states, actions, won, cycle, p_open, z, propensity, u_win, world.remaining_days)
