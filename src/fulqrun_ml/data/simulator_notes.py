"""The simulated free-text notes (`notes`): rep notes, call summaries and emails on deals and leads.

Why: the words reps and customers write are signal a CRM holds (Gong scores deals from them), and they name
people, so they exercise the PII scrub. The story (docs/simulator.md, "MEDDPICC history and notes"):

1. Notes on a deal arrive as a Poisson process, one per 8 days on average, from its creation until it ends
   (its close, or the extraction); on a lead one per 7 days until it is decided (or the extraction). The kind
   is a note (40%), a call summary (35%) or an email (25%); the author is the owning rep.
2. Each note has a tone t = quality + N(0, 1.1) (quality: the deal's z, the lead's q): weak below -0.5, strong
   above 0.5, neutral between. Its body strings together an opener for its kind, a sentence of that tone
   (deals: momentum, budget, stakeholders; leads: intent - urgency, the buying committee, pricing), and
   sometimes a next step; wording is drawn from several variants at each slot, so the language varies.
3. About a third of notes name the contact, and some carry their email or a phone number (planted PII).

Arrival times and tones depend on quality and time only, never on the outcome or on when the deal closes, so
the oracle stays the Bayes posterior. Drawn from its own generator (`default_rng([seed, 12])`, ids from a
`random.Random` seeded apart): every other table is unchanged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator_meddpicc import MeddpiccInputs, simulate_meddpicc_events
from fulqrun_ml.data.uuids import seeded_uuids
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS, NOTE_KINDS

NOTE_EVERY_DAYS = {"opportunity": 8.0, "lead": 7.0}
KIND_SHARES = (0.40, 0.35, 0.25)
TONE_NOISE, TONE_CUT = 1.1, 0.5

_OPENERS = {
    "note": ("Update:", "Note to self -", "Quick note:", "FYI"),
    "call_summary": ("Call recap:", "Summary of today's call:", "Spoke on the phone.", "Call notes:"),
    "email": ("Email thread:", "Replied by email:", "Got an email back:", "Inbox:"),
}
# Sentences by subject and tone (weak, neutral, strong).
_TONE = {
    "opportunity": (
        (
            "They keep pushing the meeting and the project lost its sponsor.",
            "Budget got frozen, no decision this quarter.",
            "Went quiet after the demo, no reply to follow-ups.",
            "They said the price is far above what they can approve.",
            "Stakeholders disagree and nobody owns the decision.",
        ),
        (
            "Discussed next steps, waiting on their internal review.",
            "They asked for another reference call.",
            "Timeline is still being worked out on their side.",
            "Shared the proposal, feedback expected next week.",
            "Some interest, but other priorities compete for budget.",
        ),
        (
            "Budget is approved and they want to start soon.",
            "Very positive call, the team is excited to move forward.",
            "They asked for the contract and an onboarding plan.",
            "Exec sponsor joined and pushed for a fast decision.",
            "Strong fit confirmed, they are ready to sign.",
        ),
    ),
    "lead": (
        (
            "Just browsing, no project planned.",
            "Downloaded the whitepaper for a student assignment.",
            "No budget this year, check back later.",
            "Asked to be removed from follow-ups.",
            "Happy with their current tool for now.",
        ),
        (
            "Wants to learn more, no timeline yet.",
            "Asked general questions about features.",
            "Might evaluate options next year.",
            "Forwarded our deck to a colleague.",
            "Interested, still researching vendors.",
        ),
        (
            "Needs a solution live before next quarter, urgent.",
            "Looping in their CFO and head of IT for a demo.",
            "Asked for pricing and a trial for the whole team.",
            "Their current contract ends next month, want to switch.",
            "Buying committee formed, they want a proposal this week.",
        ),
    ),
}
_NEXT_STEPS = ("Next: send the deck.", "Follow up Tuesday.", "Book a demo.", "Send pricing.", "")
_PII = ("spoke with", "write to", "reach at", "contact card")  # how a note names the contact (see simulate_notes)


@dataclass(frozen=True)
class NoteSubjects:
    """Deals or leads to write notes about: their ids, latent quality (z or q), life in days since the start
    (creation to end), owner (author), and the contact's name and email (the planted PII)."""

    related_type: str
    ids: np.ndarray
    quality: np.ndarray
    created_day: np.ndarray
    end_day: np.ndarray
    author: np.ndarray
    contact_name: np.ndarray
    contact_email: np.ndarray


def simulate_notes(
    subjects: NoteSubjects, organization_id: str, start: pd.Timestamp, rng: np.random.Generator, id_rng: random.Random
) -> pd.DataFrame:
    """The notes on `subjects` (contract columns of the `notes` table), in time order; see the story."""
    life = np.maximum(subjects.end_day - subjects.created_day, 0.0)
    counts = rng.poisson(life / NOTE_EVERY_DAYS[subjects.related_type])
    who = np.repeat(np.arange(len(subjects.ids)), counts)
    day = rng.uniform(subjects.created_day[who], np.maximum(subjects.end_day[who], subjects.created_day[who]))
    tone = subjects.quality[who] + rng.normal(0.0, TONE_NOISE, who.size)
    tier = np.digitize(tone, [-TONE_CUT, TONE_CUT])
    kind = rng.choice(len(NOTE_KINDS), size=who.size, p=KIND_SHARES)
    opener = np.array([_OPENERS[k] for k in NOTE_KINDS], dtype=object)[kind, rng.integers(0, 4, who.size)]
    sentence = np.array(_TONE[subjects.related_type], dtype=object)[tier, rng.integers(0, 5, who.size)]
    steps = np.array([f" {s}" if s else "" for s in _NEXT_STEPS], dtype=object)
    body = opener + " " + sentence + steps[rng.integers(0, len(steps), who.size)]
    variant = rng.integers(0, len(_PII), who.size)
    phone = "+1-555-" + rng.integers(1000, 9999, who.size).astype(str).astype(object)
    named = rng.uniform(size=who.size) < 0.35
    name, email = subjects.contact_name[who], subjects.contact_email[who]
    pii = np.array(
        [
            " Spoke with " + name + ".",
            " " + name + " asked us to write to " + email + ".",
            " Reach " + name + " at " + phone + ".",
            " Contact: " + name + ", " + email + ", " + phone + ".",
        ],
        dtype=object,
    )[variant, np.arange(who.size)]
    body = np.where(named, body + pii, body)
    by_time = np.argsort(day, kind="stable")  # order the arrays, not the frame (sorting text columns is slow)
    return pd.DataFrame(
        {
            "id": seeded_uuids(id_rng, who.size),
            "organization_id": organization_id,
            "related_type": subjects.related_type,
            "related_id": subjects.ids[who][by_time],
            "author": subjects.author[who][by_time],
            "kind": np.asarray(NOTE_KINDS, dtype=object)[kind][by_time],
            "body": body[by_time],
            "created_at": (start + pd.to_timedelta(day[by_time], unit="D")).astype("datetime64[us, UTC]"),
        }
    )


def simulate_text_tables(
    seed: int,
    opportunities: pd.DataFrame,
    contacts: pd.DataFrame,
    contact_names: np.ndarray,
    leads: pd.DataFrame,
    lead_quality: pd.DataFrame,
    deal_z: np.ndarray,
    deal_end_day: np.ndarray,
    start: pd.Timestamp,
    days: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(meddpicc_events, notes) for `simulate_crm`: the MEDDPICC writes of every deal and the notes on deals and
    leads, from their own generators (`[seed, 11]`, `[seed, 12]`), so every other table stays as it was.

    `contact_names` is the contact's name per row of `contacts` (the table itself holds only an email);
    `lead_quality` has lead_id and latent_quality; `deal_end_day` is each deal's close (or the extraction) in
    days since `start`."""
    created = ((opportunities["created_at"] - start).dt.total_seconds() / 86400.0).to_numpy()
    contact_row = pd.Series(np.arange(len(contacts)), index=contacts["id"]).reindex(opportunities["contact_id"])
    row = contact_row.to_numpy(dtype=np.int64)
    deals = MeddpiccInputs(
        opportunity_ids=opportunities["id"].to_numpy(dtype=object),
        z=deal_z,
        created_day=created,
        end_day=deal_end_day,
        owner=opportunities["assigned_to"].to_numpy(dtype=object),
        contact_name=contact_names[row],
        contact_email=contacts["email"].to_numpy(dtype=object)[row],
        latest_text={f: [None if pd.isna(t) else str(t) for t in opportunities[f]] for f in MEDDPICC_FIELDS},
        start=start,
    )
    events = simulate_meddpicc_events(deals, np.random.default_rng([seed, 11]))
    rng = np.random.default_rng([seed, 12])
    id_rng = random.Random(f"notes-{seed}")
    org = str(opportunities["organization_id"].iloc[0]) if len(opportunities) else ""
    deal_notes = simulate_notes(
        NoteSubjects("opportunity", deals.opportunity_ids, deal_z, created, deal_end_day, deals.owner,
                     deals.contact_name, deals.contact_email),
        org, start, rng, id_rng,
    )  # fmt: skip
    lead_created = ((leads["created_at"] - start).dt.total_seconds() / 86400.0).to_numpy()
    decided = leads["status"].isin(("converted", "unqualified")).to_numpy()
    decided_day = ((leads["updated_at"] - start).dt.total_seconds() / 86400.0).to_numpy()
    by_company = pd.Series(np.arange(len(contacts)), index=contacts["company_id"].to_numpy())
    lead_contact = by_company.reindex(leads["company_id"].to_numpy()).to_numpy()
    has_contact = ~np.isnan(lead_contact)
    safe = np.where(has_contact, lead_contact, 0).astype(np.int64)
    prospect = [f"Prospect {i:05d}" for i in range(len(leads))]
    lead_notes = simulate_notes(
        NoteSubjects(
            "lead",
            leads["id"].to_numpy(dtype=object),
            lead_quality.set_index("lead_id")["latent_quality"].reindex(leads["id"]).to_numpy(dtype=np.float64),
            lead_created,
            np.where(decided, decided_day, float(days)),
            leads["assigned_to"].to_numpy(dtype=object),
            np.where(has_contact, contact_names[safe], prospect),
            np.where(has_contact, contacts["email"].to_numpy(dtype=object)[safe], "info@prospect.example"),
        ),
        org, start, rng, id_rng,
    )  # fmt: skip
    notes = pd.concat([deal_notes, lead_notes], ignore_index=True)
    by_time = np.argsort(notes["created_at"].to_numpy(), kind="stable")
    return events, notes.take(by_time).reset_index(drop=True)
