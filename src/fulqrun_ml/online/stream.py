"""The stream worker: CRM change events -> mirror -> the SAME feature functions as training -> Redis.

One micro-batch (`run_once`): read what the change source holds (up to `batch_size`, waiting up to the poll
timeout for a NOTIFY when there is nothing), apply it to the CRM mirror, find the entities it touched per view
(`affected.py`), recompute them with `view.compute` at one as_of (processing time, whole milliseconds), write
them to the online store, append them to the feature history, and only then acknowledge the events (the outbox
delete, or the append source's checkpoint). What the guarantees rest on:

- *No lost event across a crash (kill -9)*: the acknowledgement is the checkpoint and comes last, so a crash
  anywhere before it replays the batch; dead letters are recorded in the same transaction as the ack.
- *No double apply*: the mirror applies events as upserts/deletes by primary key and features are recomputed
  from the mirror, never incremented, so a replayed batch yields the same rows. On restart the mirror is loaded
  in one snapshot with the list of events it already reflects, which are then not applied a second time.
- *Ordered per entity*: events are applied in seq order within a batch and batches run one after another;
  two changes of the same row commit in seq order (row locks), see `cdc.py`.
- *Never regressing Redis rows*: every write carries the worker's watermark, the largest seq it has seen (and
  at least the outbox sequence's value at start), so `_seq` only grows even when transactions commit out of
  seq order and across restarts; the store's guarded write refuses anything older.
- *Late or out-of-order events, by rule*: an event is applied when it arrives and its entities are recomputed
  at processing time, so a row stamped before the entity's last as_of counts from now on. History rows are
  therefore "as known at processing time" (transaction time), not re-stated in event time (bitemporal note:
  the offline point-in-time store recomputes valid time from the CRM itself).

`FULQRUN_STREAM_FAULT_FILE` (test-only fault injection): when set, the worker writes the batch's seqs to that
file right after its first Redis write and sleeps `FULQRUN_STREAM_FAULT_SLEEP_S` (default 60) before the ack,
so a test can kill -9 it at the worst moment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.online.affected import affected_ids
from fulqrun_ml.online.cdc import DeadLetter, OutboxConsumer, RawBatch, cdc_status, install_cdc
from fulqrun_ml.online.mirror import CRMMirror
from fulqrun_ml.online.store import OnlineStore, as_of_now
from fulqrun_ml.online.views import VIEWS, FeatureView

log = logging.getLogger(__name__)

FAULT_FILE_ENV = "FULQRUN_STREAM_FAULT_FILE"
FAULT_SLEEP_ENV = "FULQRUN_STREAM_FAULT_SLEEP_S"
MAX_CLOCK_WAIT = pd.Timedelta(milliseconds=5)


class ChangeSource(Protocol):
    """Where change events come from: the PostgreSQL outbox (`cdc.OutboxConsumer`) or appended files
    (`append_source.AppendSource`)."""

    def load(self) -> tuple[CRMTables, set[int]]: ...  # the CRM, and the seqs it already reflects
    def read(self, limit: int) -> RawBatch: ...
    def wait(self, timeout: float) -> bool: ...
    def ack(self, seqs: Sequence[int], dead_letters: Sequence[DeadLetter] = ()) -> None: ...
    def watermark(self) -> int: ...
    def close(self) -> None: ...


class FeatureHistory(Protocol):
    """`online/history.FeatureHistory`: where every write is also appended, for analysis."""

    def append(self, view: FeatureView, frame: pd.DataFrame, seq: int | Sequence[int] = 0) -> int: ...


@dataclass
class BatchResult:
    """What one micro-batch did. `latencies_ms`: per event, from its commit clock to the Redis write."""

    events: int = 0
    dead_letters: int = 0
    entities: dict[str, int] = field(default_factory=dict)
    written: int = 0
    watermark: int = 0
    as_of: pd.Timestamp | None = None
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class StreamWorker:
    """Applies change events to a CRM mirror and keeps the online store's feature views current."""

    def __init__(
        self,
        source: str | ChangeSource,
        store: OnlineStore,
        views: Sequence[FeatureView] | Mapping[str, FeatureView] | None = None,
        history: FeatureHistory | None = None,
        batch_size: int = 1000,
        poll_timeout: float = 0.2,
        schema: str = "public",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source: ChangeSource = OutboxConsumer(source, schema) if isinstance(source, str) else source
        self.store = store
        chosen = VIEWS if views is None else views
        self.views = list(chosen.values()) if isinstance(chosen, Mapping) else list(chosen)
        self.history = history
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.mirror: CRMMirror | None = None
        self._reflected: set[int] = set()
        self._watermark = 0
        self._fault_file = os.environ.get(FAULT_FILE_ENV)

    def start(self) -> None:
        """Load the CRM mirror (one snapshot) and the watermark; `run_once` calls it on first use."""
        started = time.perf_counter()
        tables, self._reflected = self.source.load()
        self.mirror = CRMMirror(tables)
        self._watermark = self.source.watermark()
        log.info(
            "stream worker: mirror loaded in %.2fs (%s), %d pending events already reflected, watermark %d",
            time.perf_counter() - started,
            self.mirror.row_counts(),
            len(self._reflected),
            self._watermark,
        )

    def run_once(self, wait: float | None = None) -> BatchResult:
        """Process one micro-batch; with `wait`, block up to that many seconds for events if none are there."""
        if self.mirror is None:
            self.start()
        assert self.mirror is not None
        batch = self.source.read(self.batch_size)
        if not len(batch) and wait:
            self.source.wait(wait)
            batch = self.source.read(self.batch_size)
        if not len(batch):
            return BatchResult(watermark=self._watermark)
        started = time.perf_counter()
        as_of = self._as_of_after(batch)
        seqs = batch.seqs
        applied = self.mirror.apply(batch.events, self._reflected.intersection(seqs))
        self._watermark = max(self._watermark, *seqs)
        result = BatchResult(events=len(seqs), watermark=self._watermark, as_of=as_of)
        for view in self.views:
            if view.ready is not None and not view.ready(self.mirror.tables):
                continue  # an optional table the view needs is still empty: nothing it could compute
            ids = affected_ids(view, applied.changes, self.mirror.tables, as_of)
            result.entities[view.name] = len(ids)
            if not ids:
                continue
            frame = view.compute_at(self.mirror.tables, ids, as_of)
            result.written += self.store.write(view, frame, seq=self._watermark)
            if self.history is not None:
                self.history.append(view, frame, seq=self._watermark)
        written_at = pd.Timestamp.now(tz="UTC")
        result.latencies_ms = [(written_at - e.committed_at).total_seconds() * 1000.0 for e in batch.events]
        self._fault_point(seqs)
        dead = [*batch.malformed, *applied.dead_letters]
        for letter in batch.malformed:
            log.warning("CDC event %s set aside: %s", letter.seq, letter.error)
        self.source.ack(seqs, dead)
        self._reflected.difference_update(seqs)
        result.dead_letters = len(dead)
        result.seconds = time.perf_counter() - started
        return result

    def run_forever(
        self,
        stop_event: threading.Event,
        max_backoff: float = 5.0,
        on_batch: Callable[[BatchResult], None] | None = None,
        until_idle: bool = False,
    ) -> None:
        """Process batches until `stop_event` is set (or, with `until_idle`, until nothing is pending). A failing
        batch (Redis down, a lost database connection) is logged and retried after a growing pause: it was not
        acknowledged, so nothing is lost, and re-applying it to the mirror is idempotent."""
        backoff = 0.1
        while not stop_event.is_set():
            try:
                result = self.run_once(wait=self.poll_timeout)
            except Exception as err:  # the worker must outlive any one batch
                log.error("stream batch failed, retrying in %.1fs (not acknowledged, nothing lost): %s", backoff, err)
                stop_event.wait(backoff)
                backoff = min(max_backoff, backoff * 2)
                continue
            backoff = 0.1
            if on_batch is not None:
                on_batch(result)
            if until_idle and result.events == 0:
                return

    @staticmethod
    def _as_of_after(batch: RawBatch) -> pd.Timestamp:
        """Now (whole ms), but not before the newest event's commit clock. Why: as_of is floored to the ms, and an
        event committed in the same millisecond carries a row time (changed_at, created_at) after that floor, so
        the recomputed features would leave it out, and nothing recomputes the entity until its next change
        (seen: 1 of 120 freshness probes stayed stale for 10 s). Waiting out that millisecond costs at most 1 ms;
        a database clock further ahead than MAX_CLOCK_WAIT (another host's skew) is not waited for."""
        newest = max((e.committed_at for e in batch.events), default=None)
        as_of = as_of_now()
        while newest is not None and as_of < newest and newest - as_of < MAX_CLOCK_WAIT:
            time.sleep(max((newest - as_of).total_seconds(), 0.0) + 0.0005)
            as_of = as_of_now()
        return as_of

    def close(self) -> None:
        self.source.close()

    def _fault_point(self, seqs: Sequence[int]) -> None:
        """Test-only: park between the Redis write and the ack so a test can kill -9 the worker there."""
        if not self._fault_file:
            return
        path, self._fault_file = self._fault_file, None  # once per process
        with open(path, "w") as out:
            json.dump(sorted(seqs), out)
        time.sleep(float(os.environ.get(FAULT_SLEEP_ENV, "60")))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m fulqrun_ml.online.stream --dsn ... --redis ...` (also `fulqrun-ml online stream`)."""
    parser = argparse.ArgumentParser(prog="fulqrun-ml online stream", description=__doc__.splitlines()[0])
    add_stream_arguments(parser)
    return run_stream(parser.parse_args(argv))


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", default=os.environ.get("FULQRUN_CRM_DSN"), help="CRM PostgreSQL DSN")
    parser.add_argument("--redis", default=os.environ.get("FULQRUN_REDIS_URL"), help="online store URL")
    parser.add_argument("--schema", default="public", help="schema holding the CRM tables")
    parser.add_argument("--views", default=",".join(VIEWS), help=f"tasks whose views to keep ({','.join(VIEWS)})")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--poll-timeout", type=float, default=0.2, help="seconds between polls without NOTIFY")
    parser.add_argument("--append-dir", help="tail change files here instead of PostgreSQL (needs --base-dir)")
    parser.add_argument("--base-dir", help="the CRM export the appended changes start from")
    parser.add_argument("--history", help="also append every write to the feature history under this directory")
    parser.add_argument(
        "--note-embeddings", help="also keep each deal's mean note embedding (view deal_note_embedding), cache here"
    )
    parser.add_argument("--until-idle", action="store_true", help="exit once no event is pending")
    parser.add_argument("--stats", help="write events/s and latency percentiles as JSON here on exit")


def run_stream(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.redis:
        raise SystemExit("online stream: pass --redis (or set FULQRUN_REDIS_URL)")
    views = [VIEWS[name] for name in args.views.split(",") if name]
    if args.note_embeddings:  # embed at write time, fetch by id (reports/bench_text.json)
        from fulqrun_ml.online.note_embeddings import note_embedding_view
        from fulqrun_ml.text.encoder import TextEncoder

        views.append(note_embedding_view(TextEncoder(cache_dir=args.note_embeddings)))
    source: str | ChangeSource
    if args.append_dir:
        from fulqrun_ml.online.append_source import AppendSource

        if not args.base_dir:
            raise SystemExit("online stream: --append-dir needs --base-dir (the CRM export the changes start from)")
        source = AppendSource(args.append_dir, args.base_dir)
    elif args.dsn:
        source = args.dsn
    else:
        raise SystemExit("online stream: pass --dsn (or set FULQRUN_CRM_DSN) or --append-dir")
    history = None
    if args.history:
        from fulqrun_ml.online.history import FeatureHistory as ParquetHistory

        history = ParquetHistory(args.history)
    worker = StreamWorker(
        source,
        OnlineStore(args.redis),
        views,
        history=history,
        batch_size=args.batch_size,
        poll_timeout=args.poll_timeout,
        schema=args.schema,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stats = StreamStats()
    try:
        worker.start()
        worker.run_forever(stop, on_batch=stats.add, until_idle=args.until_idle)
    finally:
        worker.close()
        summary = stats.summary()
        log.info("stream worker stopped: %s", summary)
        if args.stats:
            with open(args.stats, "w") as out:
                json.dump(summary, out, indent=2)
    return 0


def add_cdc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["install", "status"], help="install triggers + outbox, or report lag")
    parser.add_argument("--dsn", default=os.environ.get("FULQRUN_CRM_DSN"), help="CRM PostgreSQL DSN")
    parser.add_argument("--schema", default="public", help="schema holding the CRM tables")


def run_cdc(args: argparse.Namespace) -> int:
    """`fulqrun-ml online cdc install|status`: prints JSON."""
    if not args.dsn:
        raise SystemExit("online cdc: pass --dsn (or set FULQRUN_CRM_DSN)")
    if args.action == "install":
        result: dict[str, Any] = {"captured": install_cdc(args.dsn, schema=args.schema)}
    else:
        result = cdc_status(args.dsn, schema=args.schema)
    print(json.dumps(result, indent=2))
    return 0


@dataclass
class StreamStats:
    """Totals over batches: events, seconds busy, commit -> Redis latencies."""

    events: int = 0
    busy_s: float = 0.0
    dead_letters: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, result: BatchResult) -> None:
        self.events += result.events
        self.busy_s += result.seconds
        self.dead_letters += result.dead_letters
        self.latencies_ms.extend(result.latencies_ms)

    def summary(self) -> dict[str, Any]:
        latencies = pd.Series(self.latencies_ms, dtype=float)
        return {
            "events": self.events,
            "dead_letters": self.dead_letters,
            "busy_s": round(self.busy_s, 3),
            "events_per_busy_s": round(self.events / self.busy_s, 1) if self.busy_s else None,
            "latency_p50_ms": None if latencies.empty else round(float(latencies.quantile(0.5)), 1),
            "latency_p99_ms": None if latencies.empty else round(float(latencies.quantile(0.99)), 1),
        }


if __name__ == "__main__":
    raise SystemExit(main())
