"""Every store of the platform filled from one small simulated CRM, for the erasure and PII-scan tests.

The stores are written by the project's own writers where one exists (the CRM export writer, the Parquet
prediction store, the note-embedding view through the real `TextEncoder` and its on-disk cache, the insights
client's cache-file layout) and into a real Redis. The embedding *model* is replaced by a deterministic
hash-to-vector backend: what is under test is which cache keys exist, not what the vectors say.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.monitoring.prediction_store import ParquetStore
from fulqrun_ml.online.note_embeddings import mean_note_embeddings
from fulqrun_ml.text.encoder import TextEncoder
from fulqrun_ml.text.model import EMBEDDING_DIM


class HashBackend:
    """Deterministic unit vectors from a text's hash (stands in for the sentence model only)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.stack(
            [np.frombuffer(hashlib.sha512(t.encode()).digest() * 12, dtype=np.uint8)[:EMBEDDING_DIM] for t in texts]
        )
        out = out.astype(np.float32) - 127.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@dataclass
class World:
    root: Path
    crm: Path
    snapshots: Path
    predictions: Path
    embedding_cache: Path
    llm: Path
    models: Path
    redis_url: str
    company: str
    org: str
    other_company: str

    def cli_args(self) -> list[str]:
        return [
            "--crm", str(self.crm), "--snapshots", str(self.snapshots), "--prediction-logs", str(self.predictions),
            "--redis-url", self.redis_url, "--embedding-cache", str(self.embedding_cache), "--llm-logs", str(self.llm),
        ]  # fmt: skip


def subject_secrets(tables: CRMTables, company: str) -> set[str]:
    """The company's ids, contact emails and name, straight from the CRM (independent of the erasure code)."""
    opps = set(tables.opportunities.loc[tables.opportunities["company_id"] == company, "id"])
    contacts = tables.contacts[tables.contacts["company_id"] == company]
    leads = set(tables.leads.loc[tables.leads["company_id"] == company, "id"])
    name = set(tables.companies.loc[tables.companies["id"] == company, "name"])
    return {company} | opps | leads | set(contacts["id"]) | set(contacts["email"]) | name


def write_template(directory: Path) -> tuple[Path, CRMTables]:
    """A CRM export (written once per session and copied per test) and its tables as read back."""
    tables = simulate_crm(n_opportunities=200, n_companies=80, n_reps=6, seed=11).tables
    path = write_crm_directory(tables, directory / "crm")
    return path, DirectorySource(path).load()


@pytest.fixture(scope="session")
def erasure_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CRMTables]:
    """One CRM export for every erasure and PII-scan test (each test copies it)."""
    return write_template(tmp_path_factory.mktemp("erasure_template"))


def build_world(template: tuple[Path, CRMTables], root: Path, redis_url: str) -> World:
    """Copy the CRM and fill every other store from it."""
    crm = Path(shutil.copytree(template[0], root / "crm"))
    tables = template[1]
    opps = tables.opportunities
    with_notes = set(tables.notes.loc[tables.notes["related_type"] == "opportunity", "related_id"])
    company = next(c for c in opps["company_id"] if set(opps.loc[opps["company_id"] == c, "id"]) & with_notes)
    other_company = next(c for c in opps["company_id"] if c != company)
    org = str(opps["organization_id"].iloc[0])
    name = str(tables.companies.loc[tables.companies["id"] == company, "name"].iloc[0])
    ours = opps[opps["company_id"] == company]

    snapshots = root / "runs" / "run1"
    snapshots.mkdir(parents=True)
    holdout = opps[["id", "company_id", "stage", "value"]].rename(columns={"id": "opportunity_id"})
    holdout["company_id"] = holdout["company_id"].astype("category")  # feature frames keep categoricals
    holdout.to_parquet(snapshots / "holdout.parquet", index=False)
    accounts = pd.DataFrame({"company_id": tables.companies["id"].astype("category"), "won": 1.0})
    accounts.to_parquet(snapshots / "accounts.parquet", index=False)  # the company only in a categorical

    predictions = root / "predictions"
    records = [
        {
            "model": "deal_win",
            "request_id": f"r{i}",
            "row": 0,
            "version": 1,
            "time": pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
            "entity_id": (f"@{org}/{deal}" if i % 2 else deal),
            "latency_ms": 1.0,
            "inputs": {"stage": "proposal", "company_id": company_id},
            "outputs": {"probability": 0.5},
        }
        for i, (deal, company_id) in enumerate(zip(opps["id"], opps["company_id"], strict=True))
    ]
    ParquetStore(predictions / "store").commit(records, {})
    spool = predictions / "spool"
    spool.mkdir()
    lines = [json.dumps({"model": "deal_win", "entity_id": [d], "inputs": {"n": 1}}) for d in opps["id"].head(40)]
    (spool / "deal_win-0.jsonl").write_text("\n".join(lines) + "\n")

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    for deal in opps["id"]:
        client.hset(f"fq:fv:deal_win:1:{deal}", mapping={"stage": "proposal", "value": "1.0", "_as_of": "1"})
        client.hset(f"fq:fv:deal_win:1:@{org}/{deal}", mapping={"stage": "proposal", "_as_of": "1"})
    client.hset("fq:views", "deal_win:1", json.dumps({"name": "deal_win", "models": []}))

    cache = root / "embeddings"
    encoder = TextEncoder(backend=HashBackend(), cache_dir=cache)
    embedded = [*ours["id"], *opps.loc[opps["company_id"] != company, "id"].head(3)]  # few: the cache fsyncs each
    index = pd.DataFrame({"opportunity_id": embedded, "as_of": tables.extracted_at})
    mean_note_embeddings(tables, index, encoder)

    llm = root / "insights"
    (llm / "cache").mkdir(parents=True)
    for i, deal in enumerate(ours["id"]):
        completion = {"text": f"{name} deal {deal} is at risk.", "input_tokens": 10, "output_tokens": 5}
        (llm / "cache" / f"{i:064x}.json").write_text(json.dumps(completion))
    (llm / "cache" / f"{'f' * 64}.json").write_text(
        json.dumps({"text": "Other deal.", "input_tokens": 1, "output_tokens": 1})
    )
    (llm / "calls.jsonl").write_text(json.dumps({"kind": "summary", "prompt_sha256_prefix": "ab" * 8}) + "\n")

    models = root / "models"
    version = models / "deal_win" / "1"
    version.mkdir(parents=True)
    (version / "metadata.json").write_text(json.dumps({"name": "deal_win", "version": 1}))
    lineage = {
        "config": {"data": {"source": {"path": str(crm)}}},
        "data_window": {"train": {"rows": 10, "from": "2024-01-01", "to": "2026-01-01"}},
        "run_dir": str(snapshots),
    }
    (version / "lineage.json").write_text(json.dumps(lineage))
    other = models / "other_model" / "1"
    other.mkdir(parents=True)
    (other / "metadata.json").write_text(json.dumps({"name": "other_model", "version": 1}))
    (other / "lineage.json").write_text(json.dumps({"config": {"data": {"source": {"path": str(root / "elsewhere")}}}}))
    return World(root, crm, root / "runs", predictions, cache, llm, models, redis_url, company, org, other_company)
