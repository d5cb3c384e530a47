"""PII in CRM data: find and scrub emails, phone numbers and person names in free text; hash identifiers.

Free text (MEDDPICC fields, activity subjects and descriptions) is written by reps and names people:
"Ivan Silva is our champion", "call +1-555-0100". Before any text becomes a feature, is logged or is sent
to W&B it goes through `PIIScrubber.scrub`, which replaces each finding with a placeholder (`[EMAIL]`,
`[PHONE]`, `[NAME]`), so "a champion is named" survives as signal while the identity does not.

Detectors, and their limits (scrubbing errs toward removing too much):
- emails: `local@domain.tld`; obfuscated forms ("ivan at acme dot com") are missed.
- phones: 7-15 digits in groups separated by space, dot or dash, an optional `+country` code and
  `(area)` code, or E.164 (`+15551234567`). ISO dates are kept. Other grouped numbers with 7+ digits
  ("2024 1200") are scrubbed as well; bare digit runs without `+` ("5551234567") are missed, and so
  is a number written around a date ("2024-01-15 555 1234").
- names known to the CRM (`names_from_crm`: contacts' and users' name columns where the export has
  them, and the `first.last@` part of contact emails): the full name in any case, and each part on its
  own when capitalised. This catches "Silva agreed" but not a nickname or a misspelling.
- unknown names: two or three capitalised words in a row ("Maria Gomez") once common non-name words
  (NOT_NAMES: "Met", "Our", "VP", ...) are trimmed from either end, or an honorific and a capitalised
  word ("Dr. Gomez"). Longer capitalised runs are left alone (titles, headings). This
  misses lowercase and single-word names ("talk to maria", "ask Maria") and also removes capitalised
  phrases that are not people ("Economic Buyer", "Acme Corp").

Identifiers that must stay joinable (emails, phone numbers, external ids) are replaced by
`pseudonymize`: HMAC-SHA256 keyed with the salt in FULQRUN_PII_SALT. Without it a documented local
default is used (and a warning logged once); with the default, anyone can recompute the hash of a guessed
email, so set a secret salt wherever data leaves a developer's machine.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from fulqrun_ml.errors import FulqrunMLError

if TYPE_CHECKING:
    from fulqrun_ml.data.contract import CRMTables

log = logging.getLogger(__name__)

SALT_ENV = "FULQRUN_PII_SALT"
# For local runs only: hashes made with it are reproducible by anyone who reads this line.
DEFAULT_LOCAL_SALT = "fulqrun-ml-local-development-salt"
PLACEHOLDER = {"email": "[EMAIL]", "phone": "[PHONE]", "name": "[NAME]"}

EMAIL_PATTERN = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
PHONE_PATTERN = re.compile(
    r"(?<![\w.+-])"  # not in the middle of a word or a number
    r"(?:\+\d{7,15}"  # E.164
    r"|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4})"
    r"(?![\w-])"
)
DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")
NAME_WORD = r"(?:[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?|[A-Z]'[A-Z][a-z]+)"
CAPITALISED_RUN = re.compile(rf"(?<![\w-]){NAME_WORD}(?:[ ]{NAME_WORD})+(?![\w-])")
HONORIFIC_NAME = re.compile(rf"\b(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?[ ]{NAME_WORD}(?:[ ]{NAME_WORD})?(?![\w-])")
# Capitalised words that start sentences or name roles/things far more often than people.
NOT_NAMES = frozenset(
    """
    A An The This That These Those Our Their His Her Its We They You I It He She Met Call Called Meeting Email
    Sent Spoke Discussed Follow Next Budget Champion Economic Buyer Decision Paper Process Criteria Pain
    Metrics Competition Identify Implicate Proposal Negotiation Qualifying Prospecting Closed Won Lost
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July
    August September October November December Q1 Q2 Q3 Q4 VP CEO CFO CTO COO CIO Head Director Manager
    Sales Marketing Finance Legal Procurement Operations Ops IT Team Board Inc Ltd LLC Corp Company Group
    North South East West New Old Please Thanks Hi Hello Dear Re Fwd
    """.split()  # noqa: SIM905 (a word list reads better as text)
)


class PIIConfigError(FulqrunMLError):
    """A PII setting (salt, known names) is unusable."""


@dataclass(frozen=True)
class PIIMatch:
    """One finding in a text: what kind of PII, where, and the matched text."""

    kind: str
    start: int
    end: int
    text: str


class PIIScrubber:
    """Finds and replaces emails, phones and names; `known_names` are people the CRM knows about."""

    def __init__(self, known_names: Iterable[str] = (), detect_names: bool = True) -> None:
        names = sorted({" ".join(n.split()) for n in known_names if n and len(n.strip()) >= 2}, key=len, reverse=True)
        parts = sorted({p for n in names for p in n.split() if len(p) >= 2 and p[0].isupper()}, key=len, reverse=True)
        self.known_names = tuple(names)
        self.detect_names = detect_names
        alternatives = "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in names)
        self._full_names = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE) if names else None
        tokens = "|".join(re.escape(p) for p in parts)
        self._name_parts = re.compile(rf"(?<![\w-])(?:{tokens})(?![\w-])") if parts else None

    def find(self, text: str) -> list[PIIMatch]:
        """Every finding, overlaps resolved (earliest start wins, then the longest)."""
        found: list[PIIMatch] = []
        found += [PIIMatch("email", m.start(), m.end(), m.group()) for m in EMAIL_PATTERN.finditer(text)]
        for m in PHONE_PATTERN.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if 7 <= digits <= 15 and not DATE_LIKE.search(m.group()):
                found.append(PIIMatch("phone", m.start(), m.end(), m.group()))
        for pattern in (self._full_names, self._name_parts):
            if pattern is not None:
                found += [PIIMatch("name", m.start(), m.end(), m.group()) for m in pattern.finditer(text)]
        if self.detect_names:
            found += [PIIMatch("name", m.start(), m.end(), m.group()) for m in HONORIFIC_NAME.finditer(text)]
            found += _capitalised_names(text)
        return _without_overlaps(found)

    def scrub(self, text: str) -> str:
        """`text` with every finding replaced by its placeholder."""
        out, last = [], 0
        for match in self.find(text):
            out.append(text[last : match.start])
            out.append(PLACEHOLDER[match.kind])
            last = match.end
        out.append(text[last:])
        return "".join(out)

    def scrub_series(self, values: pd.Series) -> pd.Series:
        """Scrub a column of free text; missing values stay missing."""
        return values.map(lambda v: v if _missing(v) else self.scrub(str(v)))


def _capitalised_names(text: str) -> list[PIIMatch]:
    """Runs of capitalised words, trimmed of common non-name words at either end; 2-3 words left = a name."""
    found = []
    for run in CAPITALISED_RUN.finditer(text):
        words = [(m.start() + run.start(), m.end() + run.start()) for m in re.finditer(r"\S+", run.group())]
        while words and text[words[0][0] : words[0][1]] in NOT_NAMES:
            words.pop(0)
        while words and text[words[-1][0] : words[-1][1]] in NOT_NAMES:
            words.pop()
        if 2 <= len(words) <= 3:
            start, end = words[0][0], words[-1][1]
            found.append(PIIMatch("name", start, end, text[start:end]))
    return found


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA


def _without_overlaps(found: list[PIIMatch]) -> list[PIIMatch]:
    kept: list[PIIMatch] = []
    for match in sorted(found, key=lambda m: (m.start, -(m.end - m.start))):
        if not kept or match.start >= kept[-1].end:
            kept.append(match)
    return kept


def scrub_text(text: str, known_names: Iterable[str] = (), detect_names: bool = True) -> str:
    """Scrub one text (see PIIScrubber; build a scrubber once when scrubbing many texts)."""
    return PIIScrubber(known_names, detect_names).scrub(text)


NAME_COLUMNS = ("name", "full_name", "first_name", "last_name")


def names_from_crm(tables: CRMTables) -> set[str]:
    """People's names the CRM knows: name columns of contacts and users where present, and the
    `first.last` part of contact emails (the contract's contacts carry no name column)."""
    names: set[str] = set()
    for frame in (tables.contacts, tables.users):
        if "first_name" in frame.columns and "last_name" in frame.columns:
            full = frame["first_name"].astype("str") + " " + frame["last_name"].astype("str")
            names.update(full.dropna())
        for column in NAME_COLUMNS:
            if column in frame.columns:
                names.update(str(v) for v in frame[column].dropna())
    if "email" in tables.contacts.columns:
        for email in tables.contacts["email"].dropna():
            local = str(email).split("@", 1)[0]
            parts = [p for p in re.split(r"[._\-+]+", local) if p.isalpha() and len(p) >= 2]
            if parts:
                names.add(" ".join(p.capitalize() for p in parts))
    return {n for n in names if n and n.lower() != "nan"}


def scrubber_for_crm(tables: CRMTables, detect_names: bool = True) -> PIIScrubber:
    """A scrubber that knows every person named in the CRM."""
    return PIIScrubber(names_from_crm(tables), detect_names)


_warned_default_salt = False


def pii_salt() -> bytes:
    """The HMAC key: FULQRUN_PII_SALT, or the documented local default (warned about once)."""
    global _warned_default_salt
    salt = os.environ.get(SALT_ENV)
    if salt is None:
        if not _warned_default_salt:
            log.warning("%s is not set: hashing identifiers with the public local-development salt", SALT_ENV)
            _warned_default_salt = True
        salt = DEFAULT_LOCAL_SALT
    if not salt.strip():
        raise PIIConfigError(f"{SALT_ENV} is set but empty; set a secret salt or unset it for local runs")
    return salt.encode()


def pseudonymize(value: str, salt: str | bytes | None = None, normalize: bool = True, length: int = 32) -> str:
    """A keyed hash of an identifier: the same input and salt give the same token, so joins still work,
    while the identifier itself cannot be read back. `normalize` trims and case-folds first, so
    "Ivan@Acme.com" and "ivan@acme.com " join. `length` hex digits are kept (32 = 128 bits)."""
    if not 8 <= length <= 64:
        raise PIIConfigError(f"length must be between 8 and 64 hex digits, got {length}")
    key = pii_salt() if salt is None else (salt.encode() if isinstance(salt, str) else salt)
    text = value.strip().casefold() if normalize else value
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:length]


def pseudonymize_series(values: pd.Series, salt: str | bytes | None = None, normalize: bool = True) -> pd.Series:
    """Hash a column of identifiers; missing values stay missing."""
    key = pii_salt() if salt is None else salt
    return values.map(lambda v: v if _missing(v) else pseudonymize(str(v), key, normalize))
