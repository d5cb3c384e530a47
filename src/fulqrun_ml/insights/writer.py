"""Deal narratives (summary, risk, next steps): an offline template writer by default, an LLM when configured.

The offline writer renders templates from the facts only, so it is deterministic, free, and grounded by
construction (the grounding test holds it to that). The LLM writer builds its prompt from the same facts
(scrubbed, see facts.py), sends it through the guarded client (PII scan, cache, cost log), and runs the
grounding check on the answer: sentences with numbers not in the facts are dropped and reported. When the
LLM is unreachable, refused by the PII guard, or left with nothing grounded, the offline narrative is
returned instead, with the reason, so a narrative always exists and never carries an invented number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from fulqrun_ml.insights.client import GuardedLLMClient
from fulqrun_ml.insights.facts import DealFacts
from fulqrun_ml.insights.grounding import ground
from fulqrun_ml.insights.pii_guard import PIILeakError
from fulqrun_ml.insights.providers import LLMError

Kind = Literal["summary", "risk", "next_steps"]
KINDS: tuple[Kind, ...] = ("summary", "risk", "next_steps")
STALE_DAYS = 14  # no activity for longer than this is a risk
CUSTOMER_FACING = ("meeting", "call", "email")  # what a next step can ask the rep to do more of

SYSTEM = (
    "You write short narratives about one sales deal for its sales manager. Use only the facts given in "
    "the message. Every number you write must appear in the facts; do not compute new numbers. Tokens in "
    "square brackets stand for removed personal data: keep them as they are and never guess them. Plain "
    "sentences, no lists, at most four sentences."
)
TASKS = {
    "summary": "summarise where the deal stands.",
    "risk": "describe the risks to this deal closing, citing the facts that show them.",
    "next_steps": "draft the next steps for the rep, based on what similar won deals did next.",
}


@dataclass(frozen=True)
class Narrative:
    """The text, who wrote it (offline | openai | anthropic), and what the grounding check dropped."""

    kind: str
    text: str
    source: str
    dropped: list[dict[str, object]] = field(default_factory=list)
    fallback_reason: str | None = None


def build_prompt(kind: Kind, deal: DealFacts) -> str:
    """The user message: the task and the facts as JSON (scrubbed notes included as a fact)."""
    facts = dict(deal.facts) | ({"recent_notes": deal.notes} if deal.notes else {})
    return f"Task: {TASKS[kind]}\nFacts (JSON):\n{json.dumps(facts, indent=1, sort_keys=True)}"


def offline_narrative(kind: Kind, deal: DealFacts) -> Narrative:
    """Templates over the facts: every number printed is a fact's value."""
    f = deal.facts
    acts = f["activities_last_window"]
    assert isinstance(acts, dict)
    if kind == "summary":
        parts = [
            f"The deal is at the {f['stage']} stage with a {f['segment']} {f['industry']} company, "
            f"{f['deal_age_days']} days old and {f['days_in_stage']} days in this stage.",
            f"In the last {f['window_days']} days it logged {acts['meeting']} meetings, {acts['call']} calls "
            f"and {acts['email']} emails ({f['activities_total']} activities in total).",
        ]
    elif kind == "risk":
        parts = []
        idle = f["days_since_last_activity"]
        if idle is None:
            parts.append("No activity has been logged on this deal yet.")
        elif isinstance(idle, int) and idle > STALE_DAYS:
            parts.append(f"The deal has had no activity for {idle} days.")
        if acts["meeting"] == 0:
            parts.append(f"There was no meeting in the last {f['window_days']} days.")
        similar = f.get("similar_won_deals")
        if isinstance(similar, dict) and similar.get("median_days_to_next_stage") is not None:
            median = similar["median_days_to_next_stage"]
            if f["days_in_stage"] > median:  # type: ignore[operator]
                parts.append(
                    f"It has been {f['days_in_stage']} days in {f['stage']}, while similar won deals moved on "
                    f"after a median of {median} days."
                )
        if not parts:
            parts.append("No risk signal in the activity record: the deal is active and moving.")
    else:
        similar = f.get("similar_won_deals")
        if not isinstance(similar, dict):
            parts = ["No similar won deal is known yet, so no next step is suggested from history."]
        else:
            mean = similar["mean_next_window_activities"]
            gaps = sorted(((mean[t] - acts[t], t) for t in CUSTOMER_FACING if t in mean), reverse=True)
            parts = [
                f"In the {f['window_days']} days after this stage, the {similar['count']} most similar won deals "
                f"logged on average {mean[t]} {t}s; this deal logged {acts[t]} in its last {f['window_days']} days."
                for gap, t in gaps
                if gap > 0
            ][:2] or ["This deal is already as active as the similar won deals were: keep the current cadence."]
    return Narrative(kind, " ".join(parts), "offline")


class NarrativeWriter:
    """Offline unless given a client; with one, LLM text grounded against the facts, offline as fallback."""

    def __init__(self, client: GuardedLLMClient | None = None) -> None:
        self.client = client

    def write(self, kind: Kind, deal: DealFacts) -> Narrative:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        offline = offline_narrative(kind, deal)
        if self.client is None:
            return offline
        try:
            completion = self.client.complete(kind, SYSTEM, build_prompt(kind, deal))
        except (PIILeakError, LLMError) as err:
            return Narrative(kind, offline.text, "offline", fallback_reason=str(err))
        grounded = ground(completion.text, deal.facts)
        if not grounded.kept:
            return Narrative(kind, offline.text, "offline", grounded.dropped, "no grounded sentence in the LLM answer")
        return Narrative(kind, grounded.text, self.client.provider.name, grounded.dropped)
