"""Change events for CRMs without PostgreSQL: Parquet/CSV files appended to a directory, tailed in name order.

Each file holds a batch of change events with the `ChangeEvent` columns: seq, table, op, row (the row as a
JSON object string), committed_at, and optionally old_key (JSON). The CRM they start from is an export
(`DirectorySource`, `base_dir`). Why this shape: a CRM that can only export files can still feed the same
stream worker, mirror and feature definitions as PostgreSQL.

Checkpoint: `<events_dir>/_checkpoint.json` holds, per file name, how many rows were acknowledged, plus the
largest seq seen; it is written atomically (temp file + rename), after the worker's Redis writes, so a crash
replays at most the last batch (idempotent: the mirror applies by key). On restart the mirror is the export
plus every acknowledged event re-applied, so nothing already done is applied twice on top of itself. Dead
letters go to `<events_dir>/_dead_letter.jsonl` (flushed before the checkpoint moves past them).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.sources import DirectorySource
from fulqrun_ml.online.cdc import ChangeEvent, DeadLetter, RawBatch, parse_outbox_row
from fulqrun_ml.online.mirror import CRMMirror

CHECKPOINT = "_checkpoint.json"
DEAD_LETTERS = "_dead_letter.jsonl"
SUFFIXES = (".parquet", ".csv")


class AppendSource:
    """A `stream.ChangeSource` over appended event files (see the module docstring)."""

    def __init__(self, events_dir: str | Path, base_dir: str | Path) -> None:
        self.dir = Path(events_dir)
        self.base_dir = Path(base_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        state = json.loads((self.dir / CHECKPOINT).read_text()) if (self.dir / CHECKPOINT).is_file() else {}
        self.done: dict[str, int] = dict(state.get("done", {}))
        self._max_seq = int(state.get("max_seq", 0))
        self._pending: list[tuple[str, int, Any]] = []  # (file, row offset, seq) handed out, not yet acked

    def _files(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("_"))

    def _rows(self, path: Path) -> pd.DataFrame:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False) if path.suffix == ".csv" else pd.read_parquet(path)
        for column in ("seq", "table", "op", "row", "committed_at"):
            if column not in frame.columns:
                raise ValueError(f"event file {path.name} lacks column '{column}'")
        return frame

    def _events(self, acknowledged: bool, limit: int | None) -> tuple[RawBatch, list[tuple[str, int, Any]]]:
        batch, positions = RawBatch(), []
        for path in self._files():
            start = self.done.get(path.name, 0)
            frame = self._rows(path)
            rows = frame.iloc[:start] if acknowledged else frame.iloc[start:]
            for offset, record in enumerate(rows.to_dict("records"), start=0 if acknowledged else start):
                old = record.get("old_key")
                if isinstance(old, str):
                    try:
                        old = json.loads(old) if old else None
                    except json.JSONDecodeError:
                        old = "unreadable"  # set aside by parse_outbox_row, naming old_key
                elif not isinstance(old, dict):
                    old = None
                parsed = parse_outbox_row(
                    int(record["seq"]), record["table"], record["op"], record["row"], old, record["committed_at"]
                )
                (batch.events if isinstance(parsed, ChangeEvent) else batch.malformed).append(parsed)  # type: ignore[arg-type]
                positions.append((path.name, offset + 1, parsed.seq))
                if limit is not None and len(positions) >= limit:
                    return batch, positions
        return batch, positions

    def load(self) -> tuple[CRMTables, set[int]]:
        """The export plus every acknowledged event (so the mirror starts where the checkpoint is)."""
        tables = DirectorySource(self.base_dir).load()
        done, _ = self._events(acknowledged=True, limit=None)
        if done.events:
            mirror = CRMMirror(tables)
            mirror.apply(done.events)
            tables = mirror.tables
        return tables, set()

    def read(self, limit: int) -> RawBatch:
        batch, self._pending = self._events(acknowledged=False, limit=limit)
        return batch

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)  # files have no notification: poll
        return False

    def watermark(self) -> int:
        return self._max_seq

    def ack(self, seqs: Sequence[int], dead_letters: Sequence[DeadLetter] = ()) -> None:
        if dead_letters:
            with (self.dir / DEAD_LETTERS).open("a") as out:
                for d in dead_letters:
                    out.write(json.dumps({"seq": d.seq, "table": d.table, "op": d.op, "error": d.error}) + "\n")
                out.flush()
                os.fsync(out.fileno())
        acked = set(seqs)
        for name, end, seq in self._pending:
            if seq in acked:
                self.done[name] = max(self.done.get(name, 0), end)
                self._max_seq = max(self._max_seq, int(seq))
        tmp = self.dir / (CHECKPOINT + ".tmp")
        tmp.write_text(json.dumps({"done": self.done, "max_seq": self._max_seq}))
        os.replace(tmp, self.dir / CHECKPOINT)  # atomic: a crash leaves the old or the new checkpoint
        self._pending = []

    def close(self) -> None:
        self._pending = []
