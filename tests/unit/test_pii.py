"""PII: emails, phones and names leave free text; identifiers are replaced by keyed hashes that still join."""

from __future__ import annotations

import dataclasses
import re

import pandas as pd
import pytest

from fulqrun_ml.data.pii import (
    DEFAULT_LOCAL_SALT,
    SALT_ENV,
    PIIConfigError,
    PIIScrubber,
    names_from_crm,
    pseudonymize,
    pseudonymize_series,
    scrub_text,
    scrubber_for_crm,
)
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=150, n_companies=40, n_reps=6, seed=9).tables


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ivan.silva@company00001.example today", "write to [EMAIL] today"),
        ("CC: Maria_Gomez+crm@sub.acme.co.uk.", "CC: [EMAIL]."),
        ("call +1-555-1234 or (555) 123-4567", "call [PHONE] or [PHONE]"),
        ("office +44 20 7946 0958, mobile +15551234567.", "office [PHONE], mobile [PHONE]."),
        ("fax 555.123.4567", "fax [PHONE]"),
    ],
)
def test_emails_and_phones_are_scrubbed(text, expected):
    assert scrub_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "close planned 2024-01-15 10:30 for 40000.50 EUR",
        "deal be6521cc-3e24-44e3-baf0-27bc08d6af57 worth 1234567.5",
        "In 2024 we had 12 reps and 3 meetings",
        "economic buyer discussed",
        "Economic Buyer is the CFO",
    ],
)
def test_dates_ids_amounts_and_roles_survive(text):
    assert scrub_text(text) == text


def test_unknown_names_by_the_capitalised_words_heuristic():
    assert scrub_text("Met Maria Gomez on Monday") == "Met [NAME] on Monday"
    assert scrub_text("Dr. Gomez will sign") == "[NAME] will sign"
    assert scrub_text("Budget approved by Chen Novak.") == "Budget approved by [NAME]."
    # documented limits: one lowercase or lone first name is not recognised without knowing it
    assert scrub_text("ask maria") == "ask maria"
    assert PIIScrubber(detect_names=False).scrub("Maria Gomez") == "Maria Gomez"


def test_known_names_in_any_case_and_their_parts():
    scrubber = PIIScrubber(known_names=["Ivan Silva"], detect_names=False)
    assert scrubber.scrub("IVAN SILVA is the champion; Silva agreed, Ivan too") == (
        "[NAME] is the champion; [NAME] agreed, [NAME] too"
    )
    assert scrubber.scrub("the ivanhoe project") == "the ivanhoe project"  # whole words only


def test_names_come_from_contact_emails(crm):
    names = names_from_crm(crm)
    local = crm.contacts["email"].iloc[0].split("@")[0]
    first, last = local.split(".")
    assert f"{first.capitalize()} {last.capitalize()}" in names
    extra = crm.contacts.assign(first_name="Zora", last_name="Quill")
    assert "Zora Quill" in names_from_crm(dataclasses.replace(crm, contacts=extra))


def test_simulated_meddpicc_text_and_emails_leave_no_raw_pii(crm):
    scrubber = scrubber_for_crm(crm)
    opps = crm.opportunities
    # the people in this CRM, from the raw contact emails (first.last@company)
    people = {part for email in crm.contacts["email"] for part in email.split("@")[0].split(".")}
    person_words = re.compile(rf"\b({'|'.join(map(re.escape, people))})\b", re.IGNORECASE)
    champions = opps["champion"].dropna()
    assert champions.map(lambda t: bool(person_words.search(t))).sum() > 20  # the raw text does name people

    # free text as reps write it: MEDDPICC fields, plus notes quoting the contact's email and phone
    contacts = crm.contacts.set_index("id").loc[opps["contact_id"].head(30)]
    notes = [f"Spoke with {c.email}, call back on {c.phone}" for c in contacts.itertuples()]
    texts = [*(v for f in MEDDPICC_FIELDS for v in opps[f].dropna()), *notes]
    assert any(c.phone in t for c, t in zip(contacts.itertuples(), notes, strict=True))
    for clean in (scrubber.scrub(t) for t in texts):
        assert "@" not in clean, clean
        assert not re.search(r"\d{4}", clean), clean
        assert not person_words.search(clean), clean
        assert not scrubber.find(clean), clean  # a second scan finds nothing left
    assert scrubber.scrub(notes[0]) == "Spoke with [EMAIL], call back on [PHONE]"
    assert scrubber.scrub_series(champions).str.startswith("[NAME]").all()
    assert opps["metrics"].dropna().map(scrubber.scrub).equals(opps["metrics"].dropna())  # no PII: unchanged


def test_scrub_series_keeps_missing_values():
    out = PIIScrubber().scrub_series(pd.Series(["mail a@b.io", None], dtype="str"))
    assert out.iloc[0] == "mail [EMAIL]" and pd.isna(out.iloc[1])


def test_pseudonymize_is_keyed_deterministic_and_joinable(monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    local = pseudonymize("Ivan.Silva@Acme.com ")
    assert local == pseudonymize("ivan.silva@acme.com")  # normalised: the same person joins
    assert local == pseudonymize("ivan.silva@acme.com", salt=DEFAULT_LOCAL_SALT)
    assert len(local) == 32 and "ivan" not in local
    monkeypatch.setenv(SALT_ENV, "a-secret")
    keyed = pseudonymize("ivan.silva@acme.com")
    assert keyed != local and keyed == pseudonymize("ivan.silva@acme.com", salt="a-secret")
    assert pseudonymize("ivan", normalize=False) != pseudonymize("Ivan", normalize=False)


def test_pseudonymize_series_and_bad_settings(monkeypatch):
    hashed = pseudonymize_series(pd.Series(["a@b.io", None, "A@B.io"]), salt="s")
    assert hashed.iloc[0] == hashed.iloc[2] and pd.isna(hashed.iloc[1])
    monkeypatch.setenv(SALT_ENV, "  ")
    with pytest.raises(PIIConfigError, match=SALT_ENV):
        pseudonymize("x")
    with pytest.raises(PIIConfigError, match="length"):
        pseudonymize("x", salt="s", length=4)
