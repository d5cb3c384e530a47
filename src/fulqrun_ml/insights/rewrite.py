"""An LLM rewrite of a templated sentence that must keep every number: the same figures, no new ones.

Why stricter than grounding.ground: the dashboard's template sentences are already correct and traceable
(each number is a query result); the only thing a model may change is the wording. So the rewrite is
accepted only when the multiset of numbers it writes equals the template's: a number dropped, changed
(1.2M -> 1.3M, 23.4% -> 23%, +5% -> -5%) or added rejects it, and the template is kept with the reason. A
number is compared by value, sign, precision and whether it is a percentage, so "$1.2M" may become
"1.2 million" and "3" may become "three", but "$1.2M" may not become "$1M" or "$1,200,000".

Limit: only numbers are checked; a rewrite that keeps "5%" but turns "rose" into "fell" passes, which is
why the template text stays available beside it (the hover shows it) and templates remain the default.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from fulqrun_ml.insights.client import GuardedLLMClient
from fulqrun_ml.insights.grounding import WORDS, WrittenNumber, numbers_in
from fulqrun_ml.insights.pii_guard import PIILeakError
from fulqrun_ml.insights.providers import LLMError

SYSTEM = (
    "You rewrite one short analytics sentence for a sales leader: plainer, at most two sentences. Keep every "
    "number exactly as given (same value, same units, same sign, same rounding, dates and ids verbatim) and "
    "do not add, drop, compute or round any number. Reply with the rewritten text only."
)


@dataclass(frozen=True)
class Rewrite:
    """The text to show, who wrote it (template | provider name), and why a rewrite was rejected."""

    text: str
    source: str
    rejected: str | None = None


def _key(n: WrittenNumber) -> tuple[float, float, bool]:
    """(signed value, precision, is-percent); a number word claims what its digits claim ("three" = "3")."""
    sign = -1.0 if n.written.lstrip("$").startswith("-") else 1.0
    tolerance = 0.5 if n.written.lower() in WORDS else n.tolerance
    return round(sign * n.value, 6), round(tolerance, 6), n.percent


def number_changes(template: str, rewrite: str) -> tuple[list[str], list[str]]:
    """(numbers of the template missing from the rewrite, numbers in the rewrite the template lacks), as written."""
    want, got = numbers_in(template), numbers_in(rewrite)
    missing = Counter(_key(n) for n in want) - Counter(_key(n) for n in got)
    extra = Counter(_key(n) for n in got) - Counter(_key(n) for n in want)

    def written(numbers: list[WrittenNumber], left: Counter[tuple[float, float, bool]]) -> list[str]:
        out = []
        for n in numbers:
            if left[_key(n)] > 0:
                left[_key(n)] -= 1
                out.append(n.written)
        return out

    return written(want, missing), written(got, extra)


def rewrite_keeping_numbers(client: GuardedLLMClient | None, template: str, kind: str = "dashboard_insight") -> Rewrite:
    """The provider's rewrite when it keeps every number; the template otherwise (and offline, client None)."""
    if client is None:
        return Rewrite(template, "template")
    try:
        answer = client.complete(kind, SYSTEM, template).text.strip()
    except (LLMError, PIILeakError) as err:
        return Rewrite(template, "template", f"rewrite not used: {err}")
    if not answer:
        return Rewrite(template, "template", "rewrite not used: the provider returned no text")
    missing, extra = number_changes(template, answer)
    if missing or extra:
        detail = "; ".join(
            part
            for part in (f"dropped or changed {missing}" if missing else "", f"added {extra}" if extra else "")
            if part
        )
        return Rewrite(template, "template", f"rewrite rejected: {detail}")
    return Rewrite(answer, client.provider.name)
