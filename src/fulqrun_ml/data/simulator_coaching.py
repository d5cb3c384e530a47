"""True rep x stage selling skills on top of a simulated CRM, for coaching suggestions checked against the truth.

Why a separate module: `simulate_crm` has one global skill per rep and lost deals leave at a stage drawn
independently of everything, so nothing in it says "this rep loses deals in negotiation". Coaching needs that
truth, so this module draws it *from* a simulated CRM with its own generator (`default_rng([seed, 6])`) and
never changes the CRM (the pattern of `simulator_geo.py`):

1. **Skills.** effect[rep, stage] ~ N(0, `STAGE_SKILL_SD`) on the log-odds of converting out of each open stage
   (prospecting -> qualifying -> proposal -> negotiation -> won).
2. **Books are not random.** Each rep has a volume (lognormal(0, `VOLUME_SD`): some reps carry few deals) and
   a size tilt `1.5 x mean skill + N(0, 0.3)`: managers hand their strongest reps the enterprise deals, which
   convert worse. Every deal is re-assigned to a rep with P(rep) proportional to volume x exp(tilt x size score)
   (smb -1, mid_market 0, enterprise +1), so a raw win rate mixes skill with deal mix.
3. **Stage paths.** A deal converts out of stage k with `sigmoid(STAGE_BASE_LOGIT[k] + 0.5 x quality +
   effect[rep, k])` where quality = industry + size effects (`simulator.INDUSTRY_EFFECT`, `SIZE_EFFECT`, on the
   company's row at extraction) - 0.25 log(value / 50k) + 1.3 z (z: `simulate_crm`'s latent quality). A closed
   deal's path is drawn stage by stage (it is won when it converts out of negotiation); an open deal keeps its
   CRM stage (the current pipeline coaching puts a value on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator import INDUSTRY_EFFECT, SIZE_EFFECT, SimulatedCRM
from fulqrun_ml.data.vocabulary import OPEN_STAGES

STAGE_SKILL_SD = 0.4
VOLUME_SD = 0.7
STAGE_BASE_LOGIT = np.log(np.array([0.8, 0.8, 0.8, 0.85]) / (1 - np.array([0.8, 0.8, 0.8, 0.85])))
QUALITY_WEIGHT = 0.5
SIZE_SCORE = {"smb": -1.0, "mid_market": 0.0, "enterprise": 1.0}


@dataclass(frozen=True)
class CoachingWorld:
    """Deals with their rep and stage path (what the data shows) and the true skills (evaluation only)."""

    # opportunity_id, rep_id, company_id, industry, size, value, meddpicc_score, created_at, closed,
    # stage_reached (index into OPEN_STAGES of the last open stage reached; 4 = won), won (NA when open),
    # current_stage (the CRM stage of an open deal; closed_won / closed_lost for a closed one)
    deals: pd.DataFrame
    skill_effect: pd.DataFrame  # rep_id x stage -> true log-odds effect on converting out of that stage
    quality: np.ndarray  # per deal, the story's quality term (truth: it holds z)


def deal_quality(industry: np.ndarray, size: np.ndarray, value: np.ndarray, z: np.ndarray) -> np.ndarray:
    """industry + size - 0.25 log(value / 50k) + 1.3 z: the deal's share of every stage's conversion odds."""
    return (
        pd.Series(industry).map(INDUSTRY_EFFECT).to_numpy(dtype=float)
        + pd.Series(size).map(SIZE_EFFECT).to_numpy(dtype=float)
        - 0.25 * np.log(np.asarray(value, dtype=float) / 50_000)
        + 1.3 * np.asarray(z, dtype=float)
    )


def simulate_coaching(crm: SimulatedCRM, seed: int = 0) -> CoachingWorld:
    """Draw rep x stage skills, skill-dependent books and stage paths (deterministic per seed)."""
    rng = np.random.default_rng([seed, 6])
    tables = crm.tables
    reps = tables.users.loc[tables.users["role"] == "rep", "id"].to_numpy()
    skill = rng.normal(0.0, STAGE_SKILL_SD, size=(len(reps), len(OPEN_STAGES)))
    volume = rng.lognormal(0.0, VOLUME_SD, size=len(reps))
    tilt = 1.5 * skill.mean(axis=1) + rng.normal(0.0, 0.3, size=len(reps))

    opps = tables.opportunities.reset_index(drop=True)
    company = tables.companies.set_index("id").reindex(opps["company_id"])
    size = company["size"].to_numpy()
    weights = volume[None, :] * np.exp(tilt[None, :] * pd.Series(size).map(SIZE_SCORE).to_numpy()[:, None])
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    rep_idx = np.minimum((cumulative < rng.uniform(size=len(opps))[:, None]).sum(axis=1), len(reps) - 1)

    z = crm.latent.set_index("opportunity_id").reindex(opps["id"])["latent_quality"].to_numpy(dtype=float)
    quality = deal_quality(company["industry"].to_numpy(), size, opps["value"].to_numpy(), z)
    logit = STAGE_BASE_LOGIT[None, :] + QUALITY_WEIGHT * quality[:, None] + skill[rep_idx]
    converts = rng.uniform(size=logit.shape) < 1.0 / (1.0 + np.exp(-logit))
    # The first stage a deal fails to convert out of; len(OPEN_STAGES) when it converts out of all (won).
    reached = np.where(converts.all(axis=1), len(OPEN_STAGES), np.argmin(converts, axis=1))
    closed = opps["stage"].isin(["closed_won", "closed_lost"]).to_numpy()
    won = pd.array(reached == len(OPEN_STAGES), dtype="boolean")
    won[~closed] = pd.NA
    current = np.where(closed, np.where(reached == len(OPEN_STAGES), "closed_won", "closed_lost"), opps["stage"])
    open_reached = pd.Series(opps["stage"]).map({s: i for i, s in enumerate(OPEN_STAGES)}).fillna(0).to_numpy(int)
    deals = pd.DataFrame(
        {
            "opportunity_id": opps["id"].to_numpy(),
            "rep_id": reps[rep_idx],
            "company_id": opps["company_id"].to_numpy(),
            "industry": company["industry"].to_numpy(),
            "size": size,
            "value": opps["value"].to_numpy(dtype=float),
            "meddpicc_score": opps["meddpicc_score"].to_numpy(dtype=float),
            "created_at": opps["created_at"].to_numpy(),
            "closed": closed,
            "stage_reached": np.where(closed, reached, open_reached),
            "won": won,
            "current_stage": current,
        }
    )
    effect = pd.DataFrame(skill, index=pd.Index(reps, name="rep_id"), columns=list(OPEN_STAGES))
    return CoachingWorld(deals=deals, skill_effect=effect, quality=quality)
