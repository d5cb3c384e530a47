"""The customer lifecycle story (optional): latent account stages and CSAT survey answers with known truth.

Why a story of its own: the churn task only sees "no further won deal", while customer success works with stages
(onboarding -> adoption -> expansion | at-risk -> churn) and satisfaction surveys. To report how well a model
learns stage transitions, the simulator must know the TRUE transition probabilities of every account-month.

The story (drawn from its own generators, after every other table, so the existing tables are byte-identical):
1. A company becomes a customer at its first won deal and enters `onboarding` then.
2. Every TICK_DAYS days (a grid anchored at the day of the first opportunity, like `snapshots.snapshot_dates`)
   each customer not yet churned moves to a next stage drawn from a softmax whose logits are
   BASE_LOGITS[stage] (staying is the reference, logit 0) plus driver effects, all observable in the CRM:
   usage u = log1p(touches on its deals in the 90 days before the tick) - USAGE_CENTER, tenure in years since
   the first win, and the size segment (DRIVER_EFFECTS). Impossible moves (onboarding -> churned, ...) are
   -inf. `churned` is absorbing.
3. Each change is recorded in `account_states` (from_stage, to_stage, changed_at), the initial onboarding too.
4. In each month after a tick, a customer not churned answers a survey with probability SURVEY_RATE on a
   uniform day of that month: score = clip(round(mu + e), 1, 5), e ~ N(0, SURVEY_NOISE), with
   mu = CSAT_MEAN[stage] + 0.35 u + 0.15 (enterprise) - 0.1 (smb). Its exact expectation (the truth the
   CSAT model is scored against) is 1 + sum_k Phi((mu - k - 0.5) / sigma), k = 1..4.

The truth (`LifecycleTruth`) holds every tick's transition probabilities and each survey's expected score; it
never becomes a feature.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from fulqrun_ml.data.uuids import seeded_uuids

STAGES: tuple[str, ...] = ("onboarding", "adoption", "expansion", "at_risk", "churned")
TICK_DAYS = 30
USAGE_CENTER = 2.0  # about the mean of log1p(touches in 90 days) over customer-ticks on the default simulator
# Logit of moving from row stage to column stage, relative to staying (0); -inf: impossible.
NEG = -np.inf
BASE_LOGITS = np.array(
    [
        # onboarding adoption expansion at_risk churned
        [0.0, -0.9, NEG, -2.3, NEG],  # onboarding
        [NEG, 0.0, -2.0, -2.2, NEG],  # adoption
        [NEG, -2.0, 0.0, -2.6, NEG],  # expansion
        [NEG, -1.3, NEG, 0.0, -1.4],  # at_risk
    ]
)
# Per destination stage: effect of usage u, tenure (years) and size segment on the logit of moving there.
DRIVER_EFFECTS = {
    "usage": np.array([0.0, 0.7, 1.0, -1.0, -0.9]),
    "tenure": np.array([0.0, 0.8, 0.3, 0.0, -0.3]),
    "size": {
        "smb": np.array([0.0, 0.0, -0.3, 0.4, 0.3]),
        "mid_market": np.zeros(5),
        "enterprise": np.array([0.0, 0.0, 0.6, -0.2, -0.4]),
    },
}
SURVEY_RATE = 0.35
SURVEY_NOISE = 0.8
CSAT_MEAN = {"onboarding": 3.7, "adoption": 4.0, "expansion": 4.4, "at_risk": 2.6}
CSAT_SIZE = {"smb": -0.1, "mid_market": 0.0, "enterprise": 0.15}
COMMENTS = {  # templates by score; no names, emails or phone numbers
    1: "Very unhappy with the service.",
    2: "Several problems were not solved.",
    3: "It works, some issues remain.",
    4: "Good support and a useful product.",
    5: "Excellent, we rely on it every day.",
}


@dataclass(frozen=True)
class LifecycleTruth:
    """What only evaluation reads. `transitions`: one row per (company_id, tick) move with from_stage, drivers,
    the TRUE probability of each next stage (`p_<stage>`) and the drawn to_stage. `surveys`: survey id, the
    company's latent stage when answering and the expected score."""

    transitions: pd.DataFrame
    surveys: pd.DataFrame


def transition_probabilities(stage_index: np.ndarray, usage: np.ndarray, tenure_years: np.ndarray, size: np.ndarray):
    """[N, 5] TRUE next-stage probabilities for accounts in non-churned stages `stage_index` (0..3)."""
    logits = BASE_LOGITS[stage_index].copy()
    size_effect = np.stack([DRIVER_EFFECTS["size"][s] for s in size]) if len(size) else np.zeros((0, 5))
    drivers = np.outer(usage, DRIVER_EFFECTS["usage"]) + np.outer(tenure_years, DRIVER_EFFECTS["tenure"]) + size_effect
    stay = np.zeros_like(logits, dtype=bool)
    stay[np.arange(len(stage_index)), stage_index] = True
    logits = np.where(np.isfinite(logits) & ~stay, logits + drivers, logits)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def expected_csat(mu: np.ndarray, sigma: float = SURVEY_NOISE) -> np.ndarray:
    """E[clip(round(mu + e), 1, 5)] for e ~ N(0, sigma): 1 + sum_k P(mu + e >= k + 0.5), k = 1..4."""
    mu = np.asarray(mu, dtype=float)
    return 1.0 + sum(norm.sf((k + 0.5 - mu) / sigma) for k in range(1, 5))


def _touch_counts(tables, company_ids: np.ndarray, anchor: pd.Timestamp, n_days: int) -> np.ndarray:
    """[companies, n_days + 1] cumulative touches on each company's deals by the end of each day after anchor."""
    opp_company = tables.opportunities.set_index("id")["company_id"]
    acts = tables.activities[tables.activities["related_id"].isin(opp_company.index)]
    row_of = {c: i for i, c in enumerate(company_ids)}
    rows = opp_company.reindex(acts["related_id"]).map(row_of).to_numpy()
    days = ((acts["created_at"] - anchor).dt.total_seconds() // 86400).to_numpy().astype(int)
    counts = np.zeros((len(company_ids), n_days + 1))
    keep = (days >= 0) & (days <= n_days)
    np.add.at(counts, (rows[keep].astype(int), days[keep]), 1.0)
    return np.cumsum(counts, axis=1)


def simulate_lifecycle(seed: int, tables) -> tuple[pd.DataFrame, pd.DataFrame, LifecycleTruth]:
    """(account_states, surveys, truth) for the CRM `tables`, drawn from generators of their own."""
    rng = np.random.default_rng([seed, 23])
    id_rng = random.Random(f"lifecycle-{seed}")
    anchor = tables.opportunities["created_at"].min().normalize()
    n_days = int((tables.extracted_at - anchor).total_seconds() // 86400)
    companies = tables.companies.drop_duplicates("id")
    company_ids = companies["id"].to_numpy()
    size = companies["size"].astype(str).to_numpy()
    org = tables.organizations["id"].iloc[0]
    wins = tables.stage_history[tables.stage_history["to_stage"] == "closed_won"]
    win_company = tables.opportunities.set_index("id")["company_id"].reindex(wins["opportunity_id"]).to_numpy()
    first_win = pd.Series(wins["changed_at"].to_numpy(), index=win_company).groupby(level=0).min()
    first_win = pd.to_datetime(first_win.reindex(company_ids), utc=True)
    won_by = first_win.to_numpy(dtype="datetime64[ns]")  # NaT: never a customer
    cumulative = _touch_counts(tables, company_ids, anchor, n_days)

    state = np.full(len(company_ids), -1)  # -1: not a customer yet
    states = [
        {"company_id": c, "from_stage": None, "to_stage": "onboarding", "changed_at": t}
        for c, t in first_win.dropna().items()
    ]
    moves, survey_rows, survey_truth = [], [], []
    for tick in range(TICK_DAYS, n_days + 1, TICK_DAYS):
        at = anchor + pd.Timedelta(days=tick)
        state[(state == -1) & (won_by <= at.tz_localize(None).to_datetime64())] = 0
        alive = np.flatnonzero((state >= 0) & (state < 4))
        if len(alive):
            usage = np.log1p(cumulative[alive, tick] - cumulative[alive, max(tick - 90, 0)]) - USAGE_CENTER
            tenure = (at.tz_localize(None).to_datetime64() - won_by[alive]) / np.timedelta64(1, "D") / 365.25
            probs = transition_probabilities(state[alive], usage, np.asarray(tenure, dtype=float), size[alive])
            draws = (rng.uniform(size=(len(alive), 1)) > probs.cumsum(axis=1)).sum(axis=1)
            draws = np.minimum(draws, len(STAGES) - 1)
            moves.append(
                pd.DataFrame(
                    {
                        "company_id": company_ids[alive],
                        "tick": at,
                        "from_stage": [STAGES[s] for s in state[alive]],
                        "usage": usage,
                        "tenure_years": tenure,
                        **{f"p_{s}": probs[:, k] for k, s in enumerate(STAGES)},
                        "to_stage": [STAGES[s] for s in draws],
                    }
                )
            )
            changed = draws != state[alive]
            states += [
                {"company_id": company_ids[i], "from_stage": STAGES[state[i]], "to_stage": STAGES[d], "changed_at": at}
                for i, d in zip(alive[changed], draws[changed], strict=True)
            ]
            state[alive] = draws
            answering = alive[(state[alive] < 4) & (rng.uniform(size=len(alive)) < SURVEY_RATE)]
            usage_of = dict(zip(alive, usage, strict=True))
            when = (at + pd.to_timedelta(rng.uniform(0, TICK_DAYS, size=len(answering)), unit="D")).floor("s")
            mu = np.array(
                [CSAT_MEAN[STAGES[state[i]]] + 0.35 * usage_of[i] + CSAT_SIZE[size[i]] for i in answering]
            ).reshape(-1)
            scores = np.clip(np.round(mu + rng.normal(0.0, SURVEY_NOISE, size=len(answering))), 1, 5).astype(int)
            ids = seeded_uuids(id_rng, len(answering))
            survey_rows.append(
                pd.DataFrame(
                    {
                        "id": ids,
                        "organization_id": org,
                        "company_id": company_ids[answering],
                        "score": scores,
                        "comment": [COMMENTS[s] for s in scores],
                        "responded_at": when,
                    }
                )
            )
            survey_truth.append(
                pd.DataFrame(
                    {
                        "survey_id": ids,
                        "stage": [STAGES[state[i]] for i in answering],
                        "expected_score": expected_csat(mu),
                    }
                )
            )
    account_states = pd.DataFrame(states, columns=["company_id", "from_stage", "to_stage", "changed_at"])
    account_states["changed_at"] = pd.to_datetime(account_states["changed_at"], utc=True)
    account_states = account_states.sort_values(["changed_at", "company_id"], kind="stable").reset_index(drop=True)
    surveys = pd.concat(survey_rows, ignore_index=True)
    surveys = surveys[surveys["responded_at"] <= tables.extracted_at]
    surveys = surveys.sort_values("responded_at", kind="stable").reset_index(drop=True)
    truth_surveys = pd.concat(survey_truth, ignore_index=True)
    truth = LifecycleTruth(
        pd.concat(moves, ignore_index=True), truth_surveys[truth_surveys["survey_id"].isin(surveys["id"])]
    )
    return account_states, surveys, truth
