"""The simulated MEDDPICC history (`meddpicc_events`): how each deal's qualification was written down over time.

Why: the opportunities row keeps only the latest MEDDPICC text, so a past snapshot cannot read it without
seeing the future. With one row per change (field, 0-10 score, text, when, by whom) the qualification is
readable as it stood at any as_of. The story (docs/simulator.md, "MEDDPICC history and notes"):

1. Which elements end up filled is the opportunities row (drawn in `simulator_deal_steps.meddpicc_text` from z): this
   module only adds *when* and *how*, so every existing column stays byte-identical.
2. An element is first written `Gamma(2, 10 exp(-0.35 z))` days after the deal is created (good deals get
   qualified faster). A first write that would land after the deal ends (its close, or the extraction for an
   open deal) is recorded at that end instead: the rep fills the gap at close-out. Such rows are never
   visible to a snapshot of the open deal, so no row carries the outcome or the close time.
3. After the first write the rep revisits the element as a Poisson process (one per 20 days on average)
   until the deal ends. Each write carries a 0-10 score: round(5 + 1.1 z + 0.9 z min(age / 60 d, 1) + e),
   e ~ N(0, 1.3), clipped: the rep's reading of the deal, noisy, drifting up on good deals and down on weak
   ones as the deal ages (the "trajectory").
4. The text of a write follows its score tier (weak / partial / strong) in varied wording, and names the
   contact, their email or a phone number on some writes, so a PII scrub has real work. The latest write of
   an element carries exactly the opportunities row's text ("the current row stays the latest value").

Everything is drawn from its own generator (`default_rng([seed, 11])`): the main stream, and so every other
table, is unchanged. Observations depend on z and on time since creation only, never on the outcome or on
when the deal closes: the oracle (`simulator.oracle_win_probability`) stays the Bayes posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS

FIRST_WRITE_SHAPE, FIRST_WRITE_DAYS, FIRST_WRITE_Z = 2.0, 10.0, 0.35
REVISIT_DAYS = 20.0
SCORE_BASE, SCORE_Z, SCORE_TREND_Z, SCORE_TREND_DAYS, SCORE_NOISE = 5.0, 1.1, 0.9, 60.0, 1.3

# What a rep writes for each element, by how well it is qualified (score 0-3, 4-6, 7-10). "{name}" is the
# contact's name. Several wordings per tier: the language varies from write to write.
_TEXTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "metrics": (
        ("no numbers yet", "they could not say what success looks like", "ROI unclear, still guessing"),
        ("rough savings estimate from {name}", "some KPIs mentioned, not quantified", "metrics being worked on"),
        ("{name} confirmed 20% cost reduction target", "clear ROI case agreed", "quantified payback in 9 months"),
    ),
    "economic_buyer": (
        ("have not met the budget owner", "no access to the EB", "unknown who signs"),
        ("EB identified, not engaged", "{name} says the CFO decides", "meeting with EB requested"),
        ("met the EB, supportive", "{name} is the economic buyer and engaged", "EB sponsoring the project"),
    ),
    "decision_criteria": (
        ("criteria unknown", "they are still figuring out what they need", "no formal requirements"),
        ("draft requirements shared", "criteria partly known", "{name} sent a feature checklist"),
        ("criteria written with us", "our strengths match their criteria", "requirements locked, we fit"),
    ),
    "decision_process": (
        ("no idea how they buy", "process unclear", "decision path unknown"),
        ("steps roughly mapped", "{name} outlined approvals", "committee mentioned, dates open"),
        ("mutual plan signed off", "clear steps and dates agreed with {name}", "decision date confirmed"),
    ),
    "paper_process": (
        ("procurement unknown", "legal steps not discussed", "no view of contracting"),
        ("procurement contact found", "security review pending", "{name} forwarded the vendor form"),
        ("contract redlines done", "legal and procurement aligned", "PO process confirmed by {name}"),
    ),
    "identify_pain": (
        ("pain not clear", "nice to have for them", "no burning problem"),
        ("some pain around reporting", "{name} mentioned manual work", "pain stated, not urgent"),
        ("acute pain, losing deals today", "{name} calls it the top priority", "clear and urgent pain"),
    ),
    "implicate_pain": (
        ("no cost of inaction", "they can live with it", "impact not explored"),
        ("impact partly quantified", "{name} sees some risk in waiting", "cost of delay discussed"),
        ("delay costs them a quarter", "board sees the impact", "cost of inaction agreed with {name}"),
    ),
    "champion": (
        ("no champion", "contact is lukewarm", "{name} is polite but passive"),
        ("{name} might champion", "possible champion, untested", "{name} helpful, influence unclear"),
        ("{name} is selling internally for us", "strong champion in {name}", "{name} coaching us on the deal"),
    ),
    "competition": (
        ("incumbent favoured", "strong competitor in the deal", "we are column fodder"),
        ("two vendors shortlisted", "competitor present, no preference", "{name} evaluating alternatives"),
        ("we are the preferred vendor", "competitor dropped out", "no serious competition per {name}"),
    ),
}
_PII_TAILS = ("email", "call", "cc", "mobile")  # how a write appends the contact's email or a phone number


@dataclass(frozen=True)
class MeddpiccInputs:
    """What the history needs from `simulate_crm`: per deal its id, z, creation and end (close, or the extraction
    for a deal still open) in days since the start, owner, contact name and email, and the latest texts."""

    opportunity_ids: np.ndarray
    z: np.ndarray
    created_day: np.ndarray
    end_day: np.ndarray
    owner: np.ndarray
    contact_name: np.ndarray
    contact_email: np.ndarray
    latest_text: dict[str, list[str | None]]
    start: pd.Timestamp


def simulate_meddpicc_events(inputs: MeddpiccInputs, rng: np.random.Generator) -> pd.DataFrame:
    """One row per write of one MEDDPICC element of one deal, in time order per (deal, field); see the story."""
    filled = np.stack([np.array([t is not None for t in inputs.latest_text[f]]) for f in MEDDPICC_FIELDS], axis=1)
    deal, field = np.nonzero(filled)  # one (deal, element) pair per element filled at the end
    z = inputs.z[deal]
    created, end = inputs.created_day[deal], inputs.end_day[deal]
    first = created + rng.gamma(FIRST_WRITE_SHAPE, FIRST_WRITE_DAYS * np.exp(-FIRST_WRITE_Z * z))
    first = np.minimum(first, end)
    revisits = rng.poisson(np.maximum(end - first, 0.0) / REVISIT_DAYS)
    writes = revisits + 1
    pair = np.repeat(np.arange(deal.size), writes)
    step = np.arange(pair.size) - np.repeat(np.cumsum(writes) - writes, writes)
    later = rng.uniform(first[pair], end[pair])
    day = np.where(step == 0, first[pair], later)
    # Sort revisits in time within each pair (the first write stays first: revisits come after it).
    order = np.lexsort((day, pair))
    pair, day = pair[order], day[order]
    step = np.arange(pair.size) - np.repeat(np.cumsum(writes) - writes, writes)
    age = day - created[pair]
    trend = SCORE_TREND_Z * z[pair] * np.minimum(age / SCORE_TREND_DAYS, 1.0)
    raw = SCORE_BASE + SCORE_Z * z[pair] + trend + rng.normal(0.0, SCORE_NOISE, pair.size)
    score = np.clip(np.round(raw), 0, 10).astype(np.int64)
    is_last = step == writes[pair] - 1
    text = _texts(rng, inputs, deal[pair], field[pair], score, is_last)
    by_time = np.argsort(day, kind="stable")  # order the arrays, not the frame (sorting text columns is slow)
    rows = deal[pair][by_time]
    return pd.DataFrame(
        {
            "opportunity_id": inputs.opportunity_ids[rows],
            "field": np.asarray(MEDDPICC_FIELDS, dtype=object)[field[pair][by_time]],
            "score": score[by_time],
            "text": text[by_time],
            "changed_at": (inputs.start + pd.to_timedelta(day[by_time], unit="D")).astype("datetime64[us, UTC]"),
            "changed_by": inputs.owner[rows],
        }
    )


def _split(template: str) -> tuple[str, str, bool]:
    """A wording as (text before the name, text after it, whether it names the contact at all)."""
    before, marker, after = template.partition("{name}")
    return before, after, bool(marker)


_PARTS = np.array(
    [[[_split(t) for t in tier] for tier in _TEXTS[f]] for f in MEDDPICC_FIELDS], dtype=object
)  # [field, tier, variant, (before, after, names)]


def _texts(
    rng: np.random.Generator,
    inputs: MeddpiccInputs,
    deal: np.ndarray,
    field: np.ndarray,
    score: np.ndarray,
    is_last: np.ndarray,
) -> np.ndarray:
    """The rep's text per write: the tier's wording (the latest write: the opportunities row's text), with the
    contact's email or a phone number appended to some writes. Vectorised over object arrays (no row loop)."""
    tier = np.digitize(score, [4, 7])
    variant = rng.integers(0, 3, size=deal.size)
    tail = rng.integers(0, len(_PII_TAILS), size=deal.size)
    with_pii = rng.uniform(size=deal.size) < 0.15
    phone = rng.integers(1000, 9999, size=deal.size).astype(str).astype(object)
    parts = _PARTS[field, tier, variant]
    names = np.where(parts[:, 2].astype(bool), inputs.contact_name[deal], "")
    text = parts[:, 0] + names + parts[:, 1]
    email = inputs.contact_email[deal]
    tails = np.array(
        [
            " (" + email + ")",
            " - call +1-555-" + phone,
            " cc " + email,
            " mobile +1-555-" + phone,
        ],
        dtype=object,
    )[tail, np.arange(deal.size)]
    text = np.where(with_pii, text + tails, text)
    latest = np.stack([np.asarray(inputs.latest_text[f], dtype=object) for f in MEDDPICC_FIELDS], axis=1)
    return np.where(is_last, latest[deal, field], text)
