"""A CRM write seen in a served prediction: the live demo (`fulqrun-ml online demo`, `make run LIVE=1`) and the
probe the freshness benchmark times (`benchmarks/freshness.py`).

The demo stands the whole real-time path up on throwaway local servers: a simulated CRM in PostgreSQL
(scripts/postgres.sh) with change capture, the stream worker (in a thread of this process), Redis
(scripts/redis.sh) and Triton serving `<model>` and `<model>_by_id` for a published version. Then, for a few
open deals, it moves each to another stage the way the CRM writes it, and prints the served probability
before and after, with the time from the COMMIT to the first answer that reflects it.

"Reflects it": an answer by id whose features were computed after the commit (`as_of`) and whose probability
differs from the one before. Nothing else writes to the probed deals, so the change is ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from omegaconf import OmegaConf

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import load_crm_into_postgres
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.online.cdc import install_cdc
from fulqrun_ml.online.store import OnlineStore, as_of_now
from fulqrun_ml.online.stream import StreamWorker
from fulqrun_ml.online.views import FeatureView, view_for_version
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.repository import TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer


def service_script(script: str, command: str, data_dir: str, *flags: str) -> str:
    """Run scripts/<script> (redis.sh, postgres.sh) `command`; `start` prints the URL/DSN, which is returned."""
    path = REPO_ROOT / "scripts" / script
    done = subprocess.run(
        [str(path), command, "--data-dir", data_dir, *flags], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 and command == "start":
        raise FulqrunMLError(f"scripts/{script} start failed: {done.stderr[-800:]}")
    return done.stdout.strip()


@contextmanager
def local_services(purpose: str = "live") -> Iterator[tuple[str, str]]:
    """(PostgreSQL DSN, Redis URL) of throwaway servers on 127.0.0.1, stopped and purged afterwards; their
    directories are /tmp/fulqrun-{pg,redis}-<purpose>-<random>."""
    tag = f"{purpose}-{uuid.uuid4().hex[:8]}"
    pg_dir, redis_dir = f"/tmp/fulqrun-pg-{tag}", f"/tmp/fulqrun-redis-{tag}"
    try:
        yield service_script("postgres.sh", "start", pg_dir), service_script("redis.sh", "start", redis_dir)
    finally:
        service_script("redis.sh", "stop", redis_dir, "--purge")
        service_script("postgres.sh", "stop", pg_dir, "--purge")


def build_by_id_repository(version: ModelVersion, redis_url: str, repository: Path) -> list[tuple[str, str]]:
    """`<model>` and `<model>_by_id` (CPU serving config, prediction log off) in `repository`; returns the
    model's raw inputs as (name, Triton datatype)."""
    serving = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "serving" / "cpu.yaml"), resolve=False)
    assert isinstance(serving, dict)
    serving["prediction_log"] = {"enabled": False}
    serving["by_id"] = {"enabled": True, "redis_url": redis_url}
    for config in cpu_serving_configs(version, serving):
        if not config.name.endswith("_reasons"):
            TritonRepositoryBuilder(repository).add(version, config)
    return [(i["name"], "BYTES" if i["dtype"] == "string" else "FP32") for i in version.metadata["inputs"]]


def next_open_stage(stage: str) -> str:
    """The stage a probe moves a deal to: the next open stage, or back one from the last (never closed, so the
    deal stays open and keeps being served)."""
    k = OPEN_STAGES.index(stage)
    return OPEN_STAGES[k + 1] if k + 1 < len(OPEN_STAGES) else OPEN_STAGES[k - 1]


def change_stage(conn: psycopg.Connection, deal: str, to_stage: str) -> None:
    """Move `deal` to `to_stage` in one transaction, as the CRM writes it: a stage_history row and the
    opportunity's stage. Returns once the COMMIT is acknowledged."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO stage_history (opportunity_id, from_stage, to_stage, changed_at)"
            " SELECT id, stage, %s, clock_timestamp() FROM opportunities WHERE id = %s",
            (to_stage, deal),
        )
        conn.execute(
            "UPDATE opportunities SET stage = %s, updated_at = clock_timestamp() WHERE id = %s", (to_stage, deal)
        )


def probe(
    conn: psycopg.Connection, client: TritonPredictionClient, deal: str, stage: str, timeout_s: float
) -> dict[str, Any]:
    """One stage change on `deal`, then poll its served prediction (every ~2 ms) until it reflects the change.
    `ms` is None when it did not within `timeout_s`."""
    before = client.predict_by_id([deal])[0]
    to_stage = next_open_stage(stage)
    change_stage(conn, deal, to_stage)
    committed = time.time()
    t0 = time.perf_counter()
    polls = 0
    row = before
    while time.perf_counter() - t0 < timeout_s:
        row = client.predict_by_id([deal])[0]
        polls += 1
        fresh = row.as_of is not None and pd.Timestamp(row.as_of).timestamp() >= committed - 0.001
        if row.status == "ok" and fresh and row.probability != before.probability:
            ms = (time.perf_counter() - t0) * 1000.0
            return {
                "ms": ms,
                "polls": polls,
                "to_stage": to_stage,
                "before": before.probability,
                "after": row.probability,
            }
        time.sleep(0.002)
    return {"ms": None, "polls": polls, "to_stage": to_stage, "before": before.probability, "after": row.probability}


def seed_crm(dsn: str, store: OnlineStore, view: FeatureView, version: ModelVersion, **simulate: Any) -> Any:
    """A simulated CRM loaded into PostgreSQL with change capture, its open entities' features in Redis."""
    crm = simulate_crm(**simulate).tables
    load_crm_into_postgres(crm, dsn)
    install_cdc(dsn)
    now = as_of_now()
    ids = [str(i) for i in view.open_entities(crm, now)] if view.open_entities else []
    features = view.compute_at(crm, ids, now)
    store.write(view, features)
    store.register(view, version.name, version.version)
    return crm, ids, features


def live_demo(version: ModelVersion, deals: int = 3, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Stand the real-time path up, change `deals` open deals' stages, and return what was served."""
    view = view_for_version({**version.metadata, "name": version.name, "version": version.version})
    with local_services() as (dsn, redis_url), tempfile.TemporaryDirectory(prefix="fulqrun-live-") as work:
        store = OnlineStore(redis_url)
        crm, ids, _ = seed_crm(dsn, store, view, version, n_opportunities=3000, n_companies=400, n_reps=20, seed=7)
        worker = StreamWorker(dsn, store, [view])
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
        thread.start()
        build_by_id_repository(version, redis_url, Path(work))
        stages = crm.opportunities.set_index("id")["stage"].astype(str)
        shown = []
        try:
            with TritonServer(Path(work)) as server, psycopg.connect(dsn) as conn:
                client = TritonPredictionClient(server.grpc_url, version.name, protocol="grpc")
                for deal in ids[:deals]:
                    result = probe(conn, client, deal, stages[deal], timeout_s)
                    shown.append({"deal": deal, "from_stage": stages[deal], **result})
                client.close()
        finally:
            stop.set()
            thread.join(timeout=30)
            worker.close()
    return shown


def print_demo(shown: list[dict[str, Any]]) -> None:
    print("\nLive update: a stage change committed in PostgreSQL, then the deal scored by id through Triton")
    for s in shown:
        seen = f"served {s['ms']:.0f} ms after the commit" if s["ms"] is not None else "NOT seen within the timeout"
        print(
            f"  deal {s['deal'][:8]}…  {s['from_stage']:>11} → {s['to_stage']:<11}"
            f"  p(win) {s['before']:.3f} → {s['after']:.3f}  {seen}"
        )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", default=str(REPO_ROOT / "models"))
    parser.add_argument("--model", default="deal_win")
    parser.add_argument("--version", default="production")
    parser.add_argument("--deals", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_demo(args: argparse.Namespace) -> int:
    shown = live_demo(get_version(Path(args.models_dir), args.model, args.version), deals=args.deals)
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print_demo(shown)
    return 0 if all(s["ms"] is not None for s in shown) else 1
