"""What a CRM writer does to the database during the freshness benchmark besides the probes' stage changes
(`online/live_update.py`): a paced stream of new activities (the sustained write load) and a bulk backlog (an
outage's worth of writes).

Why a module of its own: these are the *inputs* of the measurement, the SQL a CRM application runs, stamped
with the database clock (`clock_timestamp()`), kept apart from the timing logic in `freshness.py`. The load
writer runs in its own process (multiprocessing, spawn) so its Python work does not share a GIL with the
probe that times the served answer.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Sequence
from typing import Any

import psycopg

# One activity row per deal id in the array: what a rep logging a call writes.
INSERT_ACTIVITIES = (
    "INSERT INTO activities (id, organization_id, type, status, subject, description, related_type, related_id,"
    " created_by, due_date, created_at, direction)"
    " SELECT gen_random_uuid(), o.organization_id, 'call', 'completed', 'follow up', NULL, 'opportunity', o.id,"
    " o.assigned_to, NULL, clock_timestamp(), 'outbound'"
    " FROM unnest(%s::uuid[]) AS d(id) JOIN opportunities o ON o.id = d.id"
)


def write_backlog(dsn: str, deals: Sequence[str], events: int, chunk: int = 20_000) -> float:
    """`events` new activities over `deals`, committed in chunks (each row fires the capture trigger, as a
    live write would); returns the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        done = 0
        while done < events:
            n = min(chunk, events - done)
            batch = [deals[(done + i) % len(deals)] for i in range(n)]
            conn.execute(INSERT_ACTIVITIES, (batch,))
            done += n
    return time.perf_counter() - started


def _load_writer(dsn: str, deals: list[str], rate: float, stop: Any, counter: Any, tick_s: float) -> None:
    """Insert activities at `rate` per second until `stop` is set: every `tick_s` one transaction carrying the
    rows due by then (so the pace holds even when a commit is slow). Counts committed rows in `counter`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        written = 0
        k = 0
        while not stop.is_set():
            due = int((time.perf_counter() - started) * rate) - written
            if due > 0:
                batch = [deals[(k + i) % len(deals)] for i in range(due)]
                k += due
                conn.execute(INSERT_ACTIVITIES, (batch,))
                written += due
                with counter.get_lock():
                    counter.value = written
            time.sleep(tick_s)


class LoadWriter:
    """A background process writing activities at a steady rate (0 = idle: no process)."""

    def __init__(self, dsn: str, deals: Sequence[str], rate: float, tick_s: float = 0.01) -> None:
        self.rate = rate
        context = mp.get_context("spawn")
        self._stop = context.Event()
        self._counter = context.Value("q", 0)
        self._process = (
            context.Process(
                target=_load_writer, args=(dsn, list(deals), rate, self._stop, self._counter, tick_s), daemon=True
            )
            if rate > 0
            else None
        )
        self._started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> LoadWriter:
        self._started = time.perf_counter()
        if self._process is not None:
            self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()
        self.seconds = time.perf_counter() - self._started

    @property
    def written(self) -> int:
        return int(self._counter.value)

    def achieved_rate(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0
