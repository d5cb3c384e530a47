"""The embedding cache: vectors of the subject's texts, found by recomputing their cache keys.

Why by key: the cache (text/cache.py) stores one `.npy` vector per SHA-256 of the *scrubbed* text and nothing
else, so no scan of its files can tell whose text a vector came from. The erasure knows the subject's raw texts
(notes, activity subjects and descriptions, MEDDPICC answers: `Subject.texts`), scrubs them as the encoder did
(with the names the CRM knows, as the note-embedding view does, and without, as the similar-deal search does)
and deletes those keys. The re-scan counts the same keys.

Not covered: vectors of composite texts built at a snapshot date (a similar-search deal profile joins the last
notes with stage and industry); their keys depend on the snapshot and are not recomputed here. The vector
index itself (search/index.py) is built in memory from the CRM at start and is never persisted, so it holds the
subject only until the next start after the CRM is erased.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

from fulqrun_ml.data.pii import PIIScrubber, names_from_crm
from fulqrun_ml.erasure.subject import Subject, TableReader, read_crm_table
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.text.cache import text_key
from fulqrun_ml.text.model import MODEL_TAG
from fulqrun_ml.text.validation import MAX_TEXT_CHARS, validate_text


def crm_scrubber(crm_dir: Path | None, reader: TableReader | None = None) -> PIIScrubber:
    """The scrubber the note-embedding view builds for this CRM (data/pii.py: names_from_crm)."""
    read = reader or partial(read_crm_table, Path(str(crm_dir)))
    tables = SimpleNamespace(contacts=read("contacts"), users=read("users"))
    return PIIScrubber(names_from_crm(tables))  # type: ignore[arg-type]


def subject_keys(subject: Subject, scrubbers: list[PIIScrubber]) -> set[str]:
    """Cache keys of the subject's texts under every scrubber the encoders use."""
    keys: set[str] = set()
    for text in subject.texts:
        try:
            clean = validate_text(text, "text", MAX_TEXT_CHARS)
        except FieldValidationError:
            continue  # the encoder refuses such a text, so it was never cached
        keys |= {text_key(scrubber.scrub(clean), MODEL_TAG) for scrubber in scrubbers}
    return keys


class EmbeddingCacheStore:
    """`<root>/<model tag>/<2 hex>/<key>.npy` (text/cache.py)."""

    name = "embedding_cache"

    def __init__(self, root: Path, keys: set[str]) -> None:
        self.root = Path(root) / MODEL_TAG
        self.keys = keys

    def _present(self) -> list[Path]:
        paths = (self.root / key[:2] / f"{key}.npy" for key in self.keys)
        return [p for p in paths if p.is_file()]

    def count(self) -> dict[str, int]:
        present = len(self._present())
        return {"vectors": present} if present else {}

    def erase(self) -> dict[str, int]:
        present = self._present()
        for path in present:
            path.unlink(missing_ok=True)
        return {"vectors_deleted": len(present)}
