"""The prediction log's shipper and reader: spool files written by the Triton backends -> a durable store ->
one DataFrame row per served prediction, for the performance and drift monitors.

The backends (serving/prediction_spool.py) append one JSON line per executed batch of answered requests to
per-instance spool files before the responses leave, so a record exists for every acknowledged prediction
even when tritonserver is killed. `ship` moves complete lines into the store (`prediction_store`: PostgreSQL
or Parquet):
- it resumes from the offsets the store keeps per spool file, so a restarted shipper neither skips nor
  re-reads (and a replay after a crash between storing and saving offsets is deduplicated by the store);
- a trailing line without its newline is a write still in progress: it is left for the next pass, never
  parsed half;
- a spool file is finished when its writer's flock is gone (it rotated past the file, unloaded or died); the
  shipper then holds the lock itself, ships the rest and deletes the file. A trailing partial line in a
  finished file was cut by a crash mid-write: the response waits for the write, so it was never
  acknowledged; it is counted (`torn_bytes`) and dropped with the file;
- a complete line that is not a valid record is counted and skipped (its content is not logged).

Requests refused for a bad field are not in the log: the backend logs answered requests only.

Run as a sidecar next to `fulqrun-ml serve`:
    python -m fulqrun_ml.monitoring.prediction_log ship [--interval 5]   # settings: configs/serving/cpu.yaml
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.monitoring.prediction_store import PredictionStore, open_store
from fulqrun_ml.project import CONFIG_DIR

log = logging.getLogger(__name__)
CHUNK_BYTES = 8 << 20  # read and commit at most this much of a file at a time
BASE_COLUMNS = ("request_id", "row", "time", "model", "version", "entity_id", "latency_ms")


@dataclass
class ShipReport:
    """What one `ship` pass did."""

    files: int = 0
    lines: int = 0
    records: int = 0
    bad_lines: int = 0
    pending_bytes: int = 0  # bytes after the last newline of a live file: a write in progress, left for later
    torn_bytes: int = 0  # a finished file's unterminated tail: cut by a crash, never acknowledged, dropped
    deleted_files: int = 0
    seconds: float = 0.0


def _clean(value: Any) -> Any:
    """NaN (an imputed-missing input, written as NaN by json.dumps) -> None: JSON stores reject NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def decode_column(column: Any, total: int) -> list[Any]:
    """A spool column (a list, or {"dtype", "shape", "b64"} for numbers) -> one value per row: a scalar for a
    [rows] or [rows, 1] array, else that row's nested list; NaN becomes None."""
    if isinstance(column, dict):
        array = np.frombuffer(base64.b64decode(column["b64"]), dtype=np.dtype(column["dtype"]))
        array = array.reshape([int(n) for n in column["shape"]])
        values = array.reshape(len(array)).tolist() if array.ndim == 1 or array.shape[1:] == (1,) else array.tolist()
    elif isinstance(column, list):
        values = column
    else:
        raise TypeError("a column is a list or a packed array")
    if len(values) != total:
        raise ValueError("columns do not match the row count")
    return [_clean(v) for v in values]


def explode(line: dict[str, Any]) -> list[dict[str, Any]]:
    """One spool line (a batch of requests, columnar) -> one record per row. Raises KeyError/TypeError/ValueError
    on a line that is not a record."""
    requests = [(str(request_id), int(rows), ids) for request_id, rows, ids in line["requests"]]
    total = sum(rows for _, rows, _ in requests)
    inputs = {name: decode_column(column, total) for name, column in line["inputs"].items()}
    outputs = {name: decode_column(column, total) for name, column in line["outputs"].items()}
    base = {
        "model": str(line["model"]),
        "version": int(line["version"]),
        "time": pd.Timestamp(line["time"]).tz_convert("UTC").to_pydatetime(),
        "latency_ms": float(line["latency_ms"]),
    }
    records, start = [], 0
    for request_id, rows, entity_ids in requests:
        if entity_ids is not None and len(entity_ids) != rows:
            raise ValueError("entity ids do not match the row count")
        for r in range(rows):
            k = start + r
            records.append(
                {
                    **base,
                    "request_id": request_id,
                    "row": r,
                    "entity_id": None if entity_ids is None else str(entity_ids[r]),
                    "inputs": {name: values[k] for name, values in inputs.items()},
                    "outputs": {name: values[k] for name, values in outputs.items()},
                }
            )
        start += rows
    return records


def _complete_lines(path: Path, start: int) -> Iterator[tuple[bytes, int]]:
    """Chunks of whole lines from `start` on, each with the offset just past it; stops before a partial line."""
    with open(path, "rb") as handle:
        handle.seek(start)
        offset, carry = start, b""
        while chunk := handle.read(CHUNK_BYTES):
            data = carry + chunk
            end = data.rfind(b"\n") + 1
            carry = data[end:]
            if end:
                offset += end
                yield data[:end], offset


def _claim_if_finished(path: Path) -> int | None:
    """A descriptor holding `path`'s flock when its writer is gone (see the module docstring), else None."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def ship(spool_dir: Path, store: PredictionStore, delete_finished: bool = True) -> ShipReport:
    """Move every complete spool line not yet shipped into `store`; safe to run again at any time."""
    t0 = time.perf_counter()
    report = ShipReport()
    spool_dir = Path(spool_dir)
    names = sorted(p.name for p in spool_dir.glob("*.jsonl")) if spool_dir.is_dir() else []
    offsets = store.offsets()
    done: list[str] = []
    for name in names:
        path = spool_dir / name
        claim = _claim_if_finished(path)  # before reading: a finished file cannot grow behind our back
        try:
            start = offsets.get(name, 0)
            report.files += path.stat().st_size > start
            for chunk, end in _complete_lines(path, start):
                records: list[dict[str, Any]] = []
                for number, raw in enumerate(chunk.splitlines()):
                    report.lines += 1
                    try:
                        records.extend(explode(json.loads(raw)))
                    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                        report.bad_lines += 1
                        log.warning("prediction log: %s has an unreadable line (chunk line %d); skipped", name, number)
                report.records += store.commit(records, {name: end})
                start = end
            tail = max(0, path.stat().st_size - start)
            if claim is None:
                report.pending_bytes += tail
            elif delete_finished:
                report.torn_bytes += tail
                path.unlink()
                done.append(name)
        finally:
            if claim is not None:
                os.close(claim)
    if done:
        store.forget(done)
        report.deleted_files = len(done)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def read_predictions(
    store: PredictionStore, model: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """One row per logged prediction (each (model, request_id, row) once), oldest first.

    Columns: request_id, row, time (UTC), model, version, entity_id, latency_ms, then one column per input
    field, then one per output (a float, or a list for multi-width outputs such as survival curves). A name
    used by both an input and an output or a base column is prefixed with `input_` / `output_`."""
    frame = store.frame(model, since, until)
    if frame.empty:
        return pd.DataFrame(columns=list(BASE_COLUMNS))
    parse = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731 (Parquet: text, PostgreSQL: dicts)
    inputs = pd.DataFrame.from_records([parse(v) for v in frame["inputs"]], index=frame.index)
    outputs = pd.DataFrame.from_records([parse(v) for v in frame["outputs"]], index=frame.index)
    taken = set(BASE_COLUMNS)
    inputs.columns = [f"input_{c}" if c in taken or c in outputs.columns else c for c in inputs.columns]
    outputs.columns = [f"output_{c}" if c in taken or c in inputs.columns else c for c in outputs.columns]
    base = frame[list(BASE_COLUMNS)].copy()
    base["time"] = pd.to_datetime(base["time"], utc=True)
    base["row"] = base["row"].astype("int64")
    base["version"] = base["version"].astype("int64")
    return pd.concat([base, inputs, outputs], axis=1).reset_index(drop=True)


# --- command line -----------------------------------------------------------------------------------------


def store_from_serving_config(path: Path) -> tuple[Path, PredictionStore]:
    """(spool dir, store) from a serving config's `prediction_log` block, as the backends were configured."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(OmegaConf.load(path).prediction_log, resolve=True)
    root = Path(str(settings["dir"])).resolve()
    return root / "spool", open_store(dsn=settings.get("dsn"), directory=root / "store")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fulqrun-ml monitor ship", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["ship"], default="ship", help="(the only one; optional)")
    parser.add_argument("--serving-config", default=str(CONFIG_DIR / "serving" / "cpu.yaml"))
    parser.add_argument("--interval", type=float, default=0.0, help="repeat every N seconds (0: one pass)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spool, store = store_from_serving_config(Path(args.serving_config))
    while True:
        report = ship(spool, store)
        log.info("shipped %s -> %r: %s", spool, store, report)
        if args.interval <= 0:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
