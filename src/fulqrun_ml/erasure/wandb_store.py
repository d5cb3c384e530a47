"""W&B offline runs (`wandb/offline-run-*` and `wandb/run-*` directories): the binary run log, the logged tables and
every text file of the run, erased in place so the run can still be synced.

Why rewrite the binary log rather than delete the run: `run-<id>.wandb` is the run (config, history, summary,
console output); `wandb sync` uploads exactly it. Its format is a LevelDB-style log (training/wandb_offline.py):
a 7-byte file header, 32 KiB blocks, chunks with a 7-byte header (CRC-32 of type byte + data, length, type).
Each record is a protobuf; every string field in it (history and summary `value_json`, config values, console
lines, tags) is scrubbed (`[ERASED]`), and only the records that change are re-serialised: the others keep
their exact bytes. The file is rewritten only when it is *verified*: every chunk CRC of the old file checks,
and the new file reads back into the same number of records with no mention of the subject. When a file does
not verify (an unknown version, a torn write of a crashed run, a CRC mismatch) it is not touched: the run is
**flagged** (`runs_flagged` in the report; its hits stay, so the forget reports "NOT fully erased" and exits 1)
for a person to delete or re-log.

Tables (`files/media/table/**/*.table.json`, `{"columns": [...], "data": [[...], ...]}`): a row holding one of
the subject's drop ids is removed, other cells are scrubbed. Other text files (summary and config JSON/YAML,
`output.log`, debug logs) are scrubbed line by line. Images and other binaries are numbers only and skipped.
Each file is replaced atomically (files.publish), so a rerun finishes what a crash left.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError, Message
from wandb.proto import wandb_internal_pb2 as pb

from fulqrun_ml.erasure import files
from fulqrun_ml.erasure.matcher import Matcher
from fulqrun_ml.erasure.subject import Subject

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
MAGIC = b":W&B"
TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".log", ".txt", ".md", ".csv")
RUN_PREFIXES = ("offline-run-", "run-")


class UnverifiableLog(Exception):
    """The run log is not in the format this module can rewrite safely (why in the message)."""


def read_chunks(data: bytes) -> list[bytes]:
    """The record payloads of a run log; raises UnverifiableLog on a bad header, a CRC mismatch or a torn tail."""
    if data[:4] != MAGIC or len(data) < HEADER:
        raise UnverifiableLog("not a W&B run log")
    payloads, pos, pending = [], HEADER, None
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left  # block trailer: zero padding
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0 and crc == 0:
            pos += left  # zero-filled rest of a block
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        if len(chunk) != length or zlib.crc32(bytes([kind]) + chunk) != crc:
            raise UnverifiableLog(f"chunk at byte {pos} fails its CRC (torn or unknown format)")
        pos += HEADER + length
        if kind == FULL and pending is None:
            payloads.append(chunk)
        elif kind == FIRST and pending is None:
            pending = chunk
        elif kind == MIDDLE and pending is not None:
            pending += chunk
        elif kind == LAST and pending is not None:
            payloads.append(pending + chunk)
            pending = None
        else:
            raise UnverifiableLog(f"chunk type {kind} out of order at byte {pos}")
    if pending is not None:
        raise UnverifiableLog("the last record is incomplete")
    return payloads


def write_chunks(header: bytes, payloads: list[bytes]) -> bytes:
    """The log holding `payloads` after the 7-byte `header`, framed as W&B (and LevelDB) write it."""
    out = bytearray(header)
    for payload in payloads:
        start, first = 0, True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < HEADER:
                out += b"\x00" * left
                continue
            piece = payload[start : start + left - HEADER]
            start += len(piece)
            last = start >= len(payload)
            kind = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + piece), len(piece), kind) + piece
            first = False
            if last:
                break
    return bytes(out)


def _strings(message: Message) -> Iterator[str]:
    """Every string in `message` (recursively, map keys and values included)."""
    for descriptor, value in message.ListFields():
        if descriptor.type == descriptor.TYPE_MESSAGE:
            if descriptor.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    yield str(key)
                    yield from _strings(item) if isinstance(item, Message) else [str(item)]
            else:
                for item in value if _repeated(descriptor) else [value]:
                    yield from _strings(item)
        elif descriptor.type == descriptor.TYPE_STRING:
            yield from (value if _repeated(descriptor) else [value])


def _mentions(payload: bytes, matcher: Matcher) -> bool:
    """Whether one record names the subject, judged on its decoded strings (a protobuf length byte next to an
    id would otherwise glue onto it and hide it from the token rules)."""
    if not any(t.lower().encode() in payload.lower() for t in matcher.tokens):
        return False  # cheap pre-filter: no token anywhere in the bytes
    record = pb.Record()
    record.ParseFromString(payload)
    return bool(matcher.count_text("\x1f".join(_strings(record))))


def _scrub_message(message: Message, matcher: Matcher) -> bool:
    """Scrub every string field of `message` in place (recursively); True when anything changed."""
    changed = False
    for descriptor, value in message.ListFields():
        if descriptor.type == descriptor.TYPE_MESSAGE:
            if descriptor.message_type.GetOptions().map_entry:
                for key in list(value.keys()):
                    if isinstance(value[key], Message):
                        changed = _scrub_message(value[key], matcher) or changed
                    elif isinstance(value[key], str) and matcher.count_text(value[key]):
                        value[key] = matcher.scrub_text(value[key])
                        changed = True
            else:
                items = value if _repeated(descriptor) else [value]
                changed = any([_scrub_message(item, matcher) for item in items]) or changed
        elif descriptor.type == descriptor.TYPE_STRING:
            if _repeated(descriptor):
                new = [matcher.scrub_text(v) for v in value]
                if new != list(value):
                    del value[:]
                    value.extend(new)
                    changed = True
            elif matcher.count_text(value):
                setattr(message, descriptor.name, matcher.scrub_text(value))
                changed = True
    return changed


def _repeated(descriptor: Any) -> bool:
    return bool(getattr(descriptor, "is_repeated", descriptor.label == descriptor.LABEL_REPEATED))


@dataclass
class WandbStore:
    """Every W&B run directory under `roots` (found recursively)."""

    name: str
    roots: list[Path]
    flagged: list[str] = field(default_factory=list)

    def runs(self) -> list[Path]:
        found: set[Path] = set()
        for root in self.roots:
            if Path(root).is_dir():
                found |= {
                    p
                    for p in Path(root).rglob("*")
                    if p.is_dir() and not p.is_symlink() and p.name.startswith(RUN_PREFIXES) and _in_wandb(p)
                }
        return sorted(found)

    def files(self) -> Iterator[tuple[Path, str]]:
        """(file, "log" | "table" | "text") of every file this store reads."""
        for run in self.runs():
            for path in sorted(p for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if path.suffix == ".wandb":
                    yield path, "log"
                elif path.name.endswith(".table.json"):
                    yield path, "table"
                elif path.suffix in TEXT_SUFFIXES:
                    yield path, "text"

    def texts(self) -> Iterator[tuple[Path, list[str]]]:
        """(file, its texts) for the PII scan: every string of every record of a run log, the lines of the rest."""
        for path, kind in self.files():
            if kind != "log":
                yield path, _text(path).splitlines()
                continue
            try:
                payloads = read_chunks(path.read_bytes())
            except UnverifiableLog:
                yield path, path.read_bytes().decode("utf-8", errors="replace").splitlines()
                continue
            texts: list[str] = []
            for payload in payloads:
                record = pb.Record()
                record.ParseFromString(payload)
                texts.extend(_strings(record))
            yield path, texts

    def count(self, matcher: Matcher) -> dict[str, int]:
        """Hits per file: records of a run log, rows of a table, lines of a text file that mention the subject."""
        out: dict[str, int] = {}
        for path, kind in self.files():
            if kind == "log":
                try:
                    payloads = read_chunks(path.read_bytes())
                except UnverifiableLog:  # counted as a whole: its bytes may still hold the subject
                    hits = int(matcher.count_text(path.read_bytes().decode("utf-8", errors="replace")) > 0)
                else:
                    hits = sum(1 for p in payloads if _mentions(p, matcher))
            else:
                hits = sum(1 for line in _text(path).splitlines() if matcher.count_text(line))
            if hits:
                out[str(path)] = hits
        return out

    def erase(self, subject: Subject, matcher: Matcher) -> dict[str, int]:
        """Rewrite every file that mentions the subject (module docstring); records/rows/lines changed per file."""
        changed: dict[str, int] = {}
        drop = subject.scoped(subject.drop_ids)
        for path, kind in self.files():
            if kind == "log":
                n = self._erase_log(path, matcher)
            elif kind == "table":
                n = _erase_table(path, matcher, drop)
            else:
                n = _erase_text(path, matcher)
            if n:
                changed[str(path)] = n
        return changed

    def _erase_log(self, path: Path, matcher: Matcher) -> int:
        data = path.read_bytes()
        try:
            payloads = read_chunks(data)
            new, changed = [], 0
            for payload in payloads:
                if not _mentions(payload, matcher):
                    new.append(payload)
                    continue
                record = pb.Record()
                record.ParseFromString(payload)
                _scrub_message(record, matcher)
                new.append(record.SerializeToString())
                changed += 1
            if not changed:
                return 0
            rewritten = write_chunks(data[:HEADER], new)
            check = read_chunks(rewritten)
            if len(check) != len(payloads) or any(_mentions(p, matcher) for p in check):
                raise UnverifiableLog("the rewritten log does not read back clean")
        except (UnverifiableLog, DecodeError) as why:
            self.flagged.append(f"{path.parent}: {why}")
            return 0
        files.publish(path, rewritten)
        return changed


def _in_wandb(path: Path) -> bool:
    return path.parent.name == "wandb"


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _erase_text(path: Path, matcher: Matcher) -> int:
    lines = _text(path).splitlines(keepends=True)
    hits = sum(1 for line in lines if matcher.count_text(line))
    if hits:
        files.publish(path, "".join(matcher.scrub_text(line) for line in lines).encode("utf-8"))
    return hits


def _erase_table(path: Path, matcher: Matcher, drop: frozenset[str]) -> int:
    """A W&B table: rows with a cell equal to a drop id go, other cells are scrubbed; the JSON stays a table."""
    text = _text(path)
    if not matcher.count_text(text):
        return 0
    try:
        table = json.loads(text)
        rows = table["data"]
    except (ValueError, KeyError, TypeError):
        return _erase_text(path, matcher)  # not a table after all: scrubbed as text
    kept = [row for row in rows if not any(isinstance(cell, str) and cell in drop for cell in row)]
    table["data"] = [json.loads(matcher.scrub_text(json.dumps(row))) for row in kept]
    files.publish(path, json.dumps(table).encode("utf-8"))
    return len(rows) - len(kept) + sum(1 for row in kept if matcher.count_text(json.dumps(row)))
