"""Read W&B offline runs (`offline-run-*/run-*.wandb`) without W&B's servers or private APIs.

The file is a LevelDB-style log of `wandb_internal_pb2.Record` protobufs (32 KiB blocks, 7-byte chunk
headers: crc32, length, type). W&B ships no public reader for it in recent releases, so this small one
decodes it with W&B's own protobuf classes; `runs compare` and the tests use it to see exactly what a
team would see after `wandb sync`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run log")
    records, pos, pending = [], 7, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + HEADER : pos + HEADER + length], pos + HEADER + length
        if kind == FULL:
            payload = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        else:
            payload, pending = pending + chunk, b""
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    """What a run logged: id, tags, group, config, the last value of every history key, its summary."""

    run_id: str
    path: Path
    tags: list[str] = field(default_factory=list)
    group: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    records: list[pb.Record] = field(default_factory=list, repr=False)


def load_offline_run(run_dir: Path) -> OfflineRun:
    """`run_dir` is an `offline-run-<time>-<id>` directory."""
    log_file = next(Path(run_dir).glob("run-*.wandb"))
    run = OfflineRun(run_id=log_file.stem.removeprefix("run-"), path=Path(run_dir), records=read_records(log_file))
    for record in run.records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.tags = list(record.run.tags)
            run.group = record.run.run_group
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            for item in record.history.item:
                run.history[_key(item)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
    return run


def offline_runs(root: Path) -> list[OfflineRun]:
    return [load_offline_run(d) for d in sorted(Path(root).rglob("offline-run-*")) if d.is_dir()]
