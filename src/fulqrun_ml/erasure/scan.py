"""The PII scan of every store: emails, phone numbers and names (data/pii.py's detectors) counted per store and
kind, never printed.

Why every store: PII is scrubbed before text becomes a feature, a log line or a prompt; this scan checks that
promise where the data actually ended up: prediction logs (logged inputs, as files or in PostgreSQL), Redis
values (feature rows), the embedding cache's metadata files, LLM prompt logs and response caches, snapshots, W&B
offline runs (the strings of the binary run log, tables, summaries, console logs),
and, as the system of record where PII is expected, the CRM (an export or PostgreSQL). Findings are counts
(per store, per kind, and the number of files, keys or tables holding them), so the scan's own output is safe
to paste into a ticket.

Parquet and CSV cells are scanned once per distinct value and weighted by how often it occurs (CRM columns
repeat a lot). Binary files (`.npy` vectors, ONNX) are listed as skipped: numbers only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.erasure.files import FileStore, is_table
from fulqrun_ml.erasure.postgres_store import PostgresTables, scan_postgres
from fulqrun_ml.erasure.redis_store import RedisStore
from fulqrun_ml.erasure.wandb_store import WandbStore

SYSTEM_OF_RECORD = "crm"


def _text_counts(scrubber: PIIScrubber, text: str) -> Counter[str]:
    return Counter(m.kind for line in text.splitlines() for m in scrubber.find(line))


def scan_files(store: FileStore, scrubber: PIIScrubber) -> dict[str, Any]:
    """Findings per kind in every file of a file store, and how many files hold any."""
    totals: Counter[str] = Counter()
    files = with_findings = 0
    for path in store.files():
        found: Counter[str] = Counter()
        if is_table(path):  # Parquet, CSV, a sealed snapshot (decrypted in memory)
            table = store.table(path)
            for name in table.schema.names:
                column = table[name]
                if str(column.type) not in ("string", "large_string"):
                    continue
                for entry in pc.value_counts(column).to_pylist():
                    if entry["values"]:
                        for kind, n in _text_counts(scrubber, entry["values"]).items():
                            found[kind] += n * entry["counts"]
        else:
            found = _text_counts(scrubber, path.read_text(encoding="utf-8", errors="replace"))
        files += 1
        with_findings += int(bool(found))
        totals.update(found)
    return {"files_scanned": files, "files_with_findings": with_findings, "findings": dict(totals)}


def scan_redis(store: RedisStore, scrubber: PIIScrubber) -> dict[str, Any]:
    """Findings per kind in every Redis key's name and values."""
    totals: Counter[str] = Counter()
    keys = with_findings = 0
    for key, texts in store.texts():
        found = _text_counts(scrubber, key) + sum((_text_counts(scrubber, t) for t in texts), Counter())
        keys += 1
        with_findings += int(bool(found))
        totals.update(found)
    return {"keys_scanned": keys, "keys_with_findings": with_findings, "findings": dict(totals)}


def scan_wandb(store: WandbStore, scrubber: PIIScrubber) -> dict[str, Any]:
    """Findings per kind in W&B runs: every string of the binary run logs and every line of their text files."""
    totals: Counter[str] = Counter()
    files = with_findings = 0
    for _, texts in store.texts():
        found = sum((_text_counts(scrubber, t) for t in texts), Counter())
        files += 1
        with_findings += int(bool(found))
        totals.update(found)
    return {"files_scanned": files, "files_with_findings": with_findings, "findings": dict(totals)}


def scan_stores(
    file_stores: list[FileStore],
    redis: RedisStore | None,
    scrubber: PIIScrubber,
    embedding_cache: Path | None = None,
    postgres: Sequence[PostgresTables] = (),
    wandb: WandbStore | None = None,
) -> dict[str, Any]:
    """{store: findings} plus `clean`: no finding in any store but the system of record."""
    stores: dict[str, Any] = {}
    if redis is not None:
        stores["redis"] = scan_redis(redis, scrubber)
    for pg in postgres:
        stores[pg.name] = scan_postgres(pg, scrubber)
    for store in file_stores:
        stores[store.name] = scan_files(store, scrubber)
    if wandb is not None:
        stores[wandb.name] = scan_wandb(wandb, scrubber)
    if embedding_cache is not None:
        metadata = scan_files(FileStore("embedding_cache", [Path(embedding_cache)]), scrubber)
        metadata["vectors_skipped"] = sum(1 for _ in Path(embedding_cache).rglob("*.npy"))
        stores["embedding_cache"] = metadata
    for name, result in stores.items():
        result["system_of_record"] = name == SYSTEM_OF_RECORD
    clean = all(not r["findings"] for n, r in stores.items() if n != SYSTEM_OF_RECORD)
    return {"stores": stores, "clean": clean}
