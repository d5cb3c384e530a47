"""`governance forget` on real files and a real Redis: every store loses the subject and nothing else, the report
proves it without holding PII, trained models are flagged, a crash between files is finished by a rerun.

The checks after a forget do not use the erasure's own matcher: they read every file with pandas and every
Redis key with redis-py and look for the subject's ids, emails and company name as plain substrings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from fulqrun_ml.cli import main as cli_main
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.sources import DirectorySource
from fulqrun_ml.erasure import files as erasure_files
from fulqrun_ml.erasure import forget as forget_module
from fulqrun_ml.erasure.cli import main
from fulqrun_ml.monitoring.prediction_store import ParquetStore
from tests.integration import erasure_setup
from tests.integration.erasure_setup import World, build_world, subject_secrets

erasure_template = erasure_setup.erasure_template  # the session fixture shared by the erasure tests

STORES = ("redis", "prediction_logs", "llm_logs", "snapshots", "embedding_cache", "crm")


@pytest.fixture
def world(erasure_template: tuple[Path, CRMTables], tmp_path: Path, redis_url: str) -> World:
    return build_world(erasure_template, tmp_path, redis_url.rsplit("/", 1)[0] + "/7")  # its own database


def _file_text(root: Path) -> str:
    parts = []
    for path in sorted(root.rglob("*")):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            strings = [table[f.name].cast(pa.string()) for f in table.schema if pa.types.is_dictionary(f.type)]
            strings += [table[f.name] for f in table.schema if str(f.type) in ("string", "large_string")]
            parts += [str(v) for column in strings for v in column.to_pylist() if v is not None]
        elif path.suffix in (".csv", ".json", ".jsonl"):
            parts.append(path.read_text())
    return "\n".join(parts)


def _forget(world: World, tmp_path: Path, *who: str) -> tuple[int, dict]:
    out = tmp_path / "reports"
    rc = main(["forget", *who, *world.cli_args(), "--models-dir", str(world.models), "--out", str(out)])
    reports = sorted(out.glob("*.json"))
    return rc, (json.loads(reports[-1].read_text()) if reports else {})


def test_forget_a_company_empties_every_store_and_proves_it(
    world: World, erasure_template: tuple[Path, CRMTables], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = erasure_template[1]
    secrets = subject_secrets(tables, world.company)
    client = redis.Redis.from_url(world.redis_url, decode_responses=True)
    others_keys = [k for k in client.keys("fq:fv:*") if not any(s in k for s in secrets)]
    vectors_before = len(list(world.embedding_cache.rglob("*.npy")))
    other_opps = (tables.opportunities["company_id"] == world.other_company).sum()

    rc, report = _forget(world, tmp_path, "--company", world.company, "--org", world.org)

    assert rc == 0 and report["erased"] is True
    for store in STORES:
        assert report["stores"][store]["hits_before"] > 0, store
        assert report["stores"][store]["hits_after"] == 0, store
    for root in (world.crm, world.snapshots, world.predictions, world.llm):
        text = _file_text(root)
        assert not [s for s in secrets if s in text], root
    keys = client.keys("*")
    assert not [k for k in keys if any(s in k for s in secrets)]
    assert sorted(others_keys) == sorted(k for k in keys if k.startswith("fq:fv:"))  # nobody else's row went
    deleted = report["stores"]["embedding_cache"]["erased"]["vectors_deleted"]
    assert 0 < deleted < vectors_before and len(list(world.embedding_cache.rglob("*.npy"))) == vectors_before - deleted
    assert (world.llm / "cache" / f"{'f' * 64}.json").is_file()
    logged = ParquetStore(world.predictions / "store").frame(None, None, None)  # still readable, hive columns intact
    assert len(logged) > 0 and set(logged["model"]) == {"deal_win"}
    erased = DirectorySource(world.crm).load()  # the export still meets the contract
    assert (erased.opportunities["company_id"] == world.other_company).sum() == other_opps
    assert world.company not in set(erased.companies["id"])
    report_text = json.dumps(report)
    assert not [s for s in secrets if s in report_text] and world.company not in capsys.readouterr().out

    assert report["models_flagged_for_retraining"] == [{"model": "deal_win", "version": 1}]
    audit = (world.models / "deal_win" / "audit.jsonl").read_text()
    assert '"action": "flag_retrain"' in audit and world.company not in audit
    assert not (world.models / "other_model" / "audit.jsonl").exists()
    assert cli_main(["models", "--models-dir", str(world.models), "list", "deal_win"]) == 0
    assert "trained on erased company" in capsys.readouterr().out.replace("\n", " ").replace("│", " ")


def test_forget_a_contact_keeps_the_companys_deal(
    world: World, erasure_template: tuple[Path, CRMTables], tmp_path: Path
) -> None:
    opps = erasure_template[1].opportunities
    deal = opps[opps["contact_id"].notna()].iloc[0]
    contact = erasure_template[1].contacts.set_index("id").loc[deal["contact_id"]]

    rc, report = _forget(world, tmp_path, "--contact", deal["contact_id"])

    assert rc == 0 and report["stores"]["crm"]["hits_before"] > 0
    after = DirectorySource(world.crm).load()
    kept = after.opportunities.set_index("id").loc[deal["id"]]
    assert pd.isna(kept["contact_id"]) and kept["company_id"] == deal["company_id"]
    assert deal["contact_id"] not in set(after.contacts["id"])
    text = _file_text(world.crm)
    assert deal["contact_id"] not in text and contact["email"] not in text and contact["phone"] not in text


def test_the_rescan_catches_a_store_that_was_not_erased(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every store's erasure disabled: each store's re-scan must still see the subject (the proof can fail)."""

    def count_only(self: forget_module.RedisStore, matcher: object) -> dict[str, int]:
        return {"keys_with_hits": self.count(matcher).get("keys", 0), "keys_deleted": 0, "values_removed": 0}

    monkeypatch.setattr(forget_module.RedisStore, "erase", count_only)
    monkeypatch.setattr(forget_module.EmbeddingCacheStore, "erase", lambda self: {})
    monkeypatch.setattr(forget_module.FileStore, "erase", lambda self, *args: {})
    rc, report = _forget(world, tmp_path, "--company", world.company)
    assert rc == 1 and report["erased"] is False
    for store in STORES:
        assert report["stores"][store]["hits_after"] == report["stores"][store]["hits_before"] > 0, store


def test_a_crash_between_files_leaves_whole_files_and_a_rerun_finishes(
    world: World, erasure_template: tuple[Path, CRMTables], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p: p.read_bytes() for p in world.crm.glob("*.parquet")}
    real, calls = erasure_files.publish, []

    def crash_on_third_crm_file(path: Path, data: bytes) -> None:
        calls.append(path)
        if len([p for p in calls if p.parent == world.crm]) == 3:  # derived stores done, the CRM half-way
            raise KeyboardInterrupt("simulated kill between two files")
        real(path, data)

    monkeypatch.setattr(erasure_files, "publish", crash_on_third_crm_file)
    with pytest.raises(KeyboardInterrupt):
        _forget(world, tmp_path, "--company", world.company)
    changed = [p for p, data in before.items() if p.read_bytes() != data]
    assert len(changed) == 2 and not list(world.root.rglob(".*.tmp-*"))  # no temporary file left behind
    for path in before:
        pq.read_table(path)  # every file whole: the old one or the new one
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").glob("*.json"))

    monkeypatch.setattr(erasure_files, "publish", real)
    rc, report = _forget(world, tmp_path, "--company", world.company)
    assert rc == 0 and report["erased"] is True
    assert changed == [p for p in changed if p.read_bytes() != before[p]]
    secrets = subject_secrets(erasure_template[1], world.company)
    assert not [s for s in secrets if s in _file_text(world.crm)]
    rc, _ = _forget(world, tmp_path, "--company", world.company)
    assert rc == 2  # nothing left to resolve: refused, nothing rewritten


def test_unknown_subject_or_another_organisation_is_one_error_and_changes_nothing(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = {p: p.read_bytes() for p in world.crm.glob("*")}
    for who in (["--company", "not-a-company"], ["--company", world.company, "--org", "another-org"]):
        rc, report = _forget(world, tmp_path, *who)
        err = capsys.readouterr().err
        assert rc == 2 and report == {} and err.startswith("error: ") and "Traceback" not in err
        assert world.company not in err
    assert snapshot == {p: p.read_bytes() for p in world.crm.glob("*")}
