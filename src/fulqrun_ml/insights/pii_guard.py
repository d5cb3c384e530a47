"""The last gate before anything leaves the machine: a PII scan of every prompt, refusing to send on a hit.

Prompts are built only from scrubbed facts (facts.py scrubs notes with the CRM's known names), so a hit
here means a scrub missed something or a new fact was added unscrubbed. The guard does not try to repair the
prompt (a repaired prompt would hide the bug); it raises PIILeakError, the caller falls back to the
offline writer, and the error names the kinds and positions found, never the values themselves, so the
error message and the logs do not leak what the guard caught.
"""

from __future__ import annotations

from collections.abc import Iterable

from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.errors import FulqrunMLError


class PIILeakError(FulqrunMLError):
    """A prompt about to be sent contains PII (kinds and offsets only in the message)."""


class PIIGuard:
    """`check(text)` raises PIILeakError when the scrubber finds anything in `text`."""

    def __init__(self, known_names: Iterable[str] = ()) -> None:
        self.scrubber = PIIScrubber(known_names)
        self.checked = 0
        self.refused = 0

    def check(self, *texts: str) -> None:
        for number, text in enumerate(texts):
            self.checked += 1
            found = self.scrubber.find(text)
            if found:
                self.refused += 1
                where = ", ".join(f"{m.kind} at {m.start}" for m in found[:5])
                raise PIILeakError(f"prompt part {number} holds {len(found)} PII finding(s) ({where}); not sent")
