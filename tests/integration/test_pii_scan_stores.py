"""`governance scan`: an email, a phone number and a name planted in each store (prediction log, spool, Redis
value, embedding-cache metadata, LLM prompt log, snapshot) are each found, counted per store and kind, and the
scan never prints what it found. Without the plants every store but the CRM (the system of record) is clean."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import redis

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.erasure.cli import main
from fulqrun_ml.monitoring.prediction_store import ParquetStore
from tests.integration import erasure_setup
from tests.integration.erasure_setup import build_world

erasure_template = erasure_setup.erasure_template  # the session fixture shared by the erasure tests

EMAIL, PHONE, NAME = "maria.gomez@example.org", "+44 20 7946 0958", "Maria Gomez"
PLANT = f"Spoke with {NAME}, reach her at {EMAIL} or {PHONE}"
DERIVED = ("redis", "prediction_logs", "llm_logs", "snapshots", "embedding_cache")


def _scan(args: list[str], out: Path) -> tuple[int, dict]:
    rc = main(["scan", *args, "--json", str(out)])
    return rc, json.loads(out.read_text())


def test_pii_planted_in_each_store_is_found_and_never_printed(
    erasure_template: tuple[Path, CRMTables], tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world = build_world(erasure_template, tmp_path / "w", redis_url.rsplit("/", 1)[0] + "/8")
    rc, clean = _scan(world.cli_args(), tmp_path / "clean.json")
    assert rc == 0 and clean["clean"], {s: clean["stores"][s]["findings"] for s in DERIVED}
    assert clean["stores"]["crm"]["findings"]["email"] > 0  # the CRM itself holds contacts' emails

    record = {
        "model": "deal_win", "request_id": "planted", "row": 0, "version": 1,
        "time": pd.Timestamp("2026-02-01", tz="UTC").to_pydatetime(), "entity_id": "x", "latency_ms": 1.0,
        "inputs": {"note": PLANT}, "outputs": {"probability": 0.5},
    }  # fmt: skip
    ParquetStore(world.predictions / "store").commit([record], {})
    redis.Redis.from_url(world.redis_url).hset("fq:fv:deal_win:1:planted", "note", PLANT)
    (world.embedding_cache / "index_metadata.json").write_text(json.dumps([{"deal": "d1", "text": PLANT}]))
    with open(world.llm / "calls.jsonl", "a") as handle:
        handle.write(json.dumps({"kind": "summary", "prompt": PLANT}) + "\n")
    pd.DataFrame({"opportunity_id": ["d1"], "comment": [PLANT]}).to_parquet(world.snapshots / "planted.parquet")
    capsys.readouterr()

    rc, found = _scan(world.cli_args(), tmp_path / "found.json")

    printed = capsys.readouterr().out
    assert rc == 1 and not found["clean"]
    for store in DERIVED:
        findings = found["stores"][store]["findings"]
        assert {"email", "phone", "name"} <= set(findings), (store, findings)
    assert found["stores"]["embedding_cache"]["vectors_skipped"] > 0
    dumped = json.dumps(found)
    for secret in (EMAIL, PHONE, NAME, "Gomez"):
        assert secret not in printed and secret not in dumped
    assert "PII found outside the system of record" in printed
