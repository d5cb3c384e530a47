"""The CRM's vocabulary (../shared/CRM_DATA.md): stages, roles, statuses, activity kinds and MEDDPICC fields.

Plain constants with no imports, so every layer of the data package (the typed schemas, the simulator, the
snapshot builders) can use them without depending on each other. The names are the CRM's own, so a real
export loads without renaming.
"""

from __future__ import annotations

OPEN_STAGES: tuple[str, ...] = ("prospecting", "qualifying", "proposal", "negotiation")
CLOSED_STAGES: tuple[str, ...] = ("closed_won", "closed_lost")
STAGES: tuple[str, ...] = OPEN_STAGES + CLOSED_STAGES
# The PEAK stages as the CRM names them (values of `opportunities.peak_stage`).
PEAK_STAGES: tuple[str, ...] = ("prospecting", "engaging", "advancing", "key_decision")
USER_ROLES: tuple[str, ...] = ("rep", "manager", "admin")
LEAD_STATUSES: tuple[str, ...] = ("new", "contacted", "qualified", "unqualified", "converted")
# What an activity can be attached to (`activities.related_type`), and the table each one lives in.
RELATED_TABLE_OF: dict[str, str] = {
    "lead": "leads",
    "opportunity": "opportunities",
    "company": "companies",
    "contact": "contacts",
}
RELATED_TYPES: tuple[str, ...] = tuple(RELATED_TABLE_OF)
# The CRM's PEAK view of the same journey (prospecting, engaging, advancing, key_decision).
PEAK_STAGE_OF: dict[str, str] = {
    "prospecting": "prospecting",
    "qualifying": "engaging",
    "proposal": "advancing",
    "negotiation": "key_decision",
    "closed_won": "key_decision",
    "closed_lost": "key_decision",
}
# The CRM sets a deal's `probability` from its stage; this is the rep's guess the model must beat.
STAGE_DEFAULT_PROBABILITY: dict[str, float] = {
    "prospecting": 0.10,
    "qualifying": 0.25,
    "proposal": 0.50,
    "negotiation": 0.75,
    "closed_won": 1.0,
    "closed_lost": 0.0,
}
ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "task", "note")
# Who started a touch (`activities.direction`): the customer (inbound) or the rep (outbound). Optional in an
# export; where a source has no such column or leaves it empty, the value is "unknown".
ACTIVITY_DIRECTIONS: tuple[str, ...] = ("inbound", "outbound", "unknown")
UNKNOWN_DIRECTION = "unknown"
MEDDPICC_FIELDS: tuple[str, ...] = (
    "metrics",
    "economic_buyer",
    "decision_criteria",
    "decision_process",
    "paper_process",
    "identify_pain",
    "implicate_pain",
    "champion",
    "competition",
)
# Kinds of free-text notes in the optional `notes` table: a rep's note, a call summary, an email's text.
NOTE_KINDS: tuple[str, ...] = ("note", "call_summary", "email")
# What a note may be attached to (a subset of RELATED_TYPES).
NOTE_RELATED_TYPES: tuple[str, ...] = ("lead", "opportunity")
# What a lead does on its own (`lead_events.type`, optional table): web and email behaviour, low to high intent.
LEAD_EVENT_TYPES: tuple[str, ...] = ("site_visit", "content_download", "email_open", "email_reply", "form_fill")
# A customer account's lifecycle stage (optional `account_states` table): "churned" is absorbing.
LIFECYCLE_STAGES: tuple[str, ...] = ("onboarding", "adoption", "expansion", "at_risk", "churned")
