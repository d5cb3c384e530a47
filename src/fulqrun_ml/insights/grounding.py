"""Grounding: every number in a narrative must come from the facts it was written from.

An LLM asked to summarise "3 meetings in the last 30 days, 41 days in negotiation" may write "5 meetings"
or "a 60 % chance". The check splits the narrative into sentences, reads every number in each (digits with
separators, decimals, percentages, k/M suffixes, and the number words zero..twenty), and keeps a sentence
only if each number matches a fact: the same value at the precision written (41.3 matches "41" and
"41.3"), a fraction written as a percentage (0.35 -> "35%"), or money with a k/M suffix. A sentence with
an unsupported number is dropped, and the drop is reported, so a reviewer sees what the model invented.

Limits (the check errs toward dropping): a number the model derived correctly (a sum, a difference) is
unsupported unless it is itself a fact; dates are read as their numbers (so facts carry dates as
strings, and a sentence quoting a date must quote a fact's date verbatim).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

NUMBER = re.compile(r"(?<![\w.])[-+]?\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s?(%|percent|k|K|M|m\b|million|thousand)?")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:T[\d:.+]+)?\b")
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
WORDS = {w: i for i, w in enumerate(NUMBER_WORDS)}
WORD_NUMBER = re.compile(r"\b(" + "|".join(WORDS) + r")\b", re.IGNORECASE)
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
SCALE = {"k": 1e3, "K": 1e3, "thousand": 1e3, "M": 1e6, "m": 1e6, "million": 1e6}


@dataclass(frozen=True)
class GroundedText:
    """The narrative with unsupported sentences removed, and what was removed and why."""

    text: str
    kept: list[str]
    dropped: list[dict[str, object]] = field(default_factory=list)

    @property
    def fully_grounded(self) -> bool:
        return not self.dropped


@dataclass(frozen=True)
class WrittenNumber:
    """A number as written: its value, and the precision it claims (half a unit of its last digit)."""

    written: str
    value: float
    tolerance: float
    percent: bool


def numbers_in(sentence: str) -> list[WrittenNumber]:
    """Each number in `sentence` (dates removed first): "3", "41.5", "35%", "$65,723", "65.7k", "seven"."""
    out = []
    without_dates = DATE.sub(" ", sentence)
    for match in NUMBER.finditer(without_dates):
        whole, fraction, suffix = match.group(1), match.group(2) or "", match.group(3)
        scale = SCALE.get(suffix or "", 1.0)
        decimals = max(0, len(fraction) - 1)
        value = float(whole.replace(",", "") + fraction) * scale
        tolerance = 0.5 * 10.0**-decimals * scale + 1e-9
        out.append(WrittenNumber(match.group(0).strip(), value, tolerance, suffix in ("%", "percent")))
    for match in WORD_NUMBER.finditer(without_dates):
        out.append(WrittenNumber(match.group(0), float(WORDS[match.group(0).lower()]), 1e-9, False))
    return out


def fact_numbers(facts: Mapping[str, object]) -> list[float]:
    """Every number the facts hold (nested dicts and lists included; booleans and strings skipped)."""
    found: list[float] = []

    def walk(value: object) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            if math.isfinite(value):
                found.append(float(value))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(facts)
    return found


def fact_strings(facts: Mapping[str, object]) -> list[str]:
    """Every string the facts hold (dates are compared as written)."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(facts)
    return found


def supported(number: WrittenNumber, allowed: Iterable[float]) -> bool:
    """Whether a written number matches some fact at the precision it was written with ("65k" claims
    65,000 +/- 500; "35%" is a fraction 0.35 +/- 0.005 or a fact that is already a percentage)."""
    for fact in allowed:
        candidates = (fact, fact * 100.0) if number.percent else (fact,)
        if any(abs(candidate - number.value) <= number.tolerance for candidate in candidates):
            return True
    return False


def ground(text: str, facts: Mapping[str, object]) -> GroundedText:
    """Keep the sentences whose every number is supported by `facts`; report the rest."""
    allowed = fact_numbers(facts)
    dates = {v[:10] for v in fact_strings(facts) if DATE.fullmatch(v[:10])}
    kept, dropped = [], []
    for sentence in (s.strip() for s in SENTENCE.split(text)):
        if not sentence:
            continue
        unsupported = [n.written for n in numbers_in(sentence) if not supported(n, allowed)]
        unsupported += [d.group(0) for d in DATE.finditer(sentence) if d.group(0)[:10] not in dates]
        if unsupported:
            dropped.append({"sentence": sentence, "unsupported": unsupported})
        else:
            kept.append(sentence)
    return GroundedText(text=" ".join(kept), kept=kept, dropped=dropped)
