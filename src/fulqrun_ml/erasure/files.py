"""File stores: CRM exports and snapshots (Parquet, CSV), prediction logs (Parquet parts, JSONL spool) and JSON
caches, each erased by rewriting only the files that hold the subject, one atomic replace per file.

Why per file and atomic: a kill -9 in the middle of a forget must leave every file either as it was or as it
will be (temporary sibling, fsync, rename, fsync of the directory: `registry.locking.atomic_write_bytes`).
A rerun then rewrites what is left, so the whole forget is idempotent. Files are visited in dependency order
(activities and notes before opportunities, contacts and companies last), so a rerun after a crash can still
resolve the subject from the tables not yet rewritten (erasure/subject.py).

Formats: Parquet keeps its schema (Arrow in, Arrow out); CSV is read as text and written as text; JSONL drops
each line that holds one of the subject's row ids and scrubs the rest; a JSON file is scrubbed, or deleted when
the store says its files are disposable (an LLM response cache). A snapshot sealed at rest
(`holdout.parquet.enc`, data/snapshot_files.py) is decrypted in memory and rewritten through that module's
`rewrite_snapshot`, so it stays sealed (atomically, the plaintext never on disk); without the keyring it is
an error naming the file, raised by the count before anything is changed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fulqrun_ml.data.snapshot_files import SEALED_SUFFIX, rewrite_snapshot, snapshot_bytes
from fulqrun_ml.erasure.matcher import Matcher
from fulqrun_ml.erasure.subject import ErasureError, Subject
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.locking import atomic_write_bytes

SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
WANDB_DIR = "wandb"  # W&B run directories inside run directories are erasure/wandb_store.py's
# Leaf tables first, the tables the subject is resolved from last (see the module docstring).
CRM_ORDER = ("activities", "notes", "meddpicc_events", "stage_history", "opportunity_history", "lead_events")
CRM_LAST = ("opportunities", "leads", "contacts", "companies")


def publish(path: Path, data: bytes) -> None:
    """Replace one file atomically. A module-level function so fault-injection tests can fail between files."""
    atomic_write_bytes(path, data)


def _rank(path: Path) -> tuple[int, str]:
    stem = path.stem
    if stem in CRM_LAST:
        return 2 + CRM_LAST.index(stem), str(path)
    return (0 if stem in CRM_ORDER else 1), str(path)


@dataclass
class FileStore:
    """Every data file under `roots` (recursively; hidden and temporary files skipped)."""

    name: str
    roots: list[Path]
    disposable_json: bool = False  # delete a JSON file that mentions the subject instead of scrubbing it
    skipped: dict[str, str] = field(default_factory=dict)

    def files(self) -> Iterator[Path]:
        found = []
        for root in self.roots:
            if Path(root).is_file():
                found.append(Path(root))
                continue
            if not Path(root).is_dir():
                continue
            for path in Path(root).rglob("*"):
                parts = path.relative_to(root).parts
                hidden = any(part.startswith(".") for part in parts)
                wanted = path.suffix in SUFFIXES or path.name.endswith(SEALED_SUFFIX)
                if path.is_file() and wanted and not hidden and WANDB_DIR not in parts[:-1]:
                    found.append(path)
        yield from sorted(found, key=_rank)

    # --- reading -------------------------------------------------------------------------------------

    def table(self, path: Path) -> pa.Table:
        try:
            if is_sealed(path):
                return _decoded(pq.read_table(io.BytesIO(snapshot_bytes(path))))
            if path.suffix == ".parquet":
                return _decoded(pq.read_table(path, partitioning=None))  # the file as stored, no hive columns
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            return pa.Table.from_pandas(frame, preserve_index=False)
        except (OSError, ValueError, pa.ArrowException) as err:
            raise ErasureError(f"{self.name}: {path} cannot be read ({type(err).__name__})") from None
        except FulqrunMLError as err:  # sealed: no keyring, wrong key, altered (names file and key id, never a key)
            raise ErasureError(f"{self.name}: {err}") from None

    def count(self, matcher: Matcher) -> dict[str, int]:
        """Hits per file (rows, lines or JSON files that mention the subject); files without hits left out."""
        out: dict[str, int] = {}
        for path in self.files():
            if is_table(path):
                hits = matcher.hit_rows(self.table(path))
            elif path.suffix == ".jsonl":
                hits = sum(1 for line in _lines(path) if matcher.count_text(line))
            else:
                hits = int(matcher.count_text(path.read_text(encoding="utf-8", errors="replace")) > 0)
            if hits:
                out[str(path)] = hits
        return out

    # --- erasing -------------------------------------------------------------------------------------

    def erase(self, subject: Subject, matcher: Matcher, hits: dict[str, int] | None = None) -> dict[str, int]:
        """Rewrite (or delete) every file that mentions the subject; rows/lines/files removed per file. `hits`
        (this store's `count` just before) limits the work to the files known to hold the subject."""
        removed: dict[str, int] = {}
        for path in self.files():
            if hits is not None and str(path) not in hits:
                continue
            if is_table(path):
                table = self.table(path)
                if hits is None and not matcher.hit_rows(table):
                    continue
                kept = matcher.erase(table)
                if is_sealed(path):
                    rewrite_snapshot(kept.to_pandas(), path)  # stays sealed (data/snapshot_files.py)
                else:
                    publish(path, _encode(kept, path))
                removed[str(path)] = table.num_rows - kept.num_rows
            elif path.suffix == ".jsonl":
                lines = _lines(path)
                if not any(matcher.count_text(line) for line in lines):
                    continue
                drop = [line for line in lines if _holds_any(line, subject.scoped(subject.drop_ids))]
                kept_lines = [matcher.scrub_text(line) for line in lines if line not in drop]
                publish(path, "".join(f"{line}\n" for line in kept_lines).encode("utf-8"))
                removed[str(path)] = len(drop)
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
                if not matcher.count_text(text):
                    continue
                if self.disposable_json:
                    path.unlink()
                else:
                    publish(path, matcher.scrub_text(text).encode("utf-8"))
                removed[str(path)] = 1
        return removed


def is_sealed(path: Path) -> bool:
    """A snapshot sealed at rest (`<name>.parquet.enc`)."""
    return path.name.endswith(SEALED_SUFFIX)


def is_table(path: Path) -> bool:
    """Parquet, CSV or a sealed Parquet snapshot: read as an Arrow table."""
    return path.suffix in (".parquet", ".csv") or is_sealed(path)


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary-encoded text (pandas categoricals) as plain strings, so it is matched like any text."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type) and pa.types.is_string(f.type.value_type):
            table = table.set_column(i, pa.field(f.name, pa.string()), table[f.name].cast(pa.string()))
    return table


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _holds_any(text: str, ids: frozenset[str]) -> bool:
    return any(i in text for i in ids)


def _encode(table: pa.Table, path: Path) -> bytes:
    buffer = io.BytesIO()
    if path.suffix == ".parquet":
        pq.write_table(table, buffer)
    else:
        table.to_pandas().to_csv(buffer, index=False)
    return buffer.getvalue()
