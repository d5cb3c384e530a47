"""Aliases, promote/rollback and the append-only audit log, on real files (and real processes for locking)."""

import itertools
import json
import multiprocessing
import os

import pytest

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry import aliases as aliases_module
from fulqrun_ml.registry.alias_state import ALIASES_FILE, read_alias_state, resolve_alias
from fulqrun_ml.registry.aliases import promote, rollback
from fulqrun_ml.registry.audit import AUDIT_FILE, read_audit
from fulqrun_ml.registry.catalog import serving_version
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.registry.store import get_version, publish_version


def publish(models_dir, n, name="m"):
    for _ in range(n):
        publish_version(models_dir, name, lambda tmp: (tmp / "model.onnx").write_bytes(b"x"), {})


def test_promote_and_rollback_walk_back_through_production_history(tmp_path):
    publish(tmp_path, 3)
    for version in (1, 2, 3):
        change = promote(tmp_path, "m", version, actor="ada")
        assert change.to_version == version and change.changed
    assert get_version(tmp_path, "m", "production").version == 3
    assert resolve_alias(tmp_path, "m", "production") == 3
    back = rollback(tmp_path, "m", actor="bob")
    assert (back.from_version, back.to_version, back.action) == (3, 2, "rollback")
    assert get_version(tmp_path, "m", "production").version == 2
    assert rollback(tmp_path, "m").to_version == 1  # a second rollback keeps walking back, no 2<->3 toggle
    with pytest.raises(RegistryError, match="no earlier production version than v1"):
        rollback(tmp_path, "m")
    assert get_version(tmp_path, "m").version == 3  # "latest" is unaffected by aliases


def test_rollback_without_production_is_a_clear_error(tmp_path):
    publish(tmp_path, 1)
    with pytest.raises(RegistryError, match="no production version to roll back"):
        rollback(tmp_path, "m")


def test_candidate_flows_to_production_and_archived_is_a_set(tmp_path):
    publish(tmp_path, 3)
    promote(tmp_path, "m", 1)
    promote(tmp_path, "m", 2, alias="candidate")
    assert read_alias_state(tmp_path, "m").aliases_of(2) == ["candidate"]
    change = promote(tmp_path, "m", "candidate")  # promote whatever the candidate is
    assert (change.from_version, change.to_version) == (1, 2)
    state = read_alias_state(tmp_path, "m")
    assert state.production == 2 and state.candidate is None
    promote(tmp_path, "m", 1, alias="archived")
    promote(tmp_path, "m", 3, alias="archived")
    assert read_alias_state(tmp_path, "m").archived == (1, 3)
    with pytest.raises(RegistryError, match="version 2 of 'm' is in production"):
        promote(tmp_path, "m", 2, alias="archived")
    promote(tmp_path, "m", 3)  # promoting an archived version un-archives it
    state = read_alias_state(tmp_path, "m")
    assert state.archived == (1,) and state.aliases_of(3) == ["production"]


def test_bad_alias_and_missing_version_are_refused_without_changes(tmp_path):
    publish(tmp_path, 1)
    with pytest.raises(RegistryError, match="unknown alias 'staging'"):
        promote(tmp_path, "m", 1, alias="staging")
    with pytest.raises(RegistryError, match="no version 9"):
        promote(tmp_path, "m", 9)
    assert not (tmp_path / "m" / ALIASES_FILE).exists()
    assert [r["action"] for r in read_audit(tmp_path, "m")] == ["publish"]


def test_audit_log_is_only_ever_appended(tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "ada")
    path = tmp_path / "m" / AUDIT_FILE
    snapshots = []

    def snapshot():
        snapshots.append((path.read_bytes(), os.stat(path).st_ino))

    publish(tmp_path, 3)
    snapshot()
    for op in (
        lambda: promote(tmp_path, "m", 1),
        lambda: promote(tmp_path, "m", 2, actor="bob"),
        lambda: promote(tmp_path, "m", 3, alias="candidate"),
        lambda: rollback(tmp_path, "m", actor="carol"),
        lambda: promote(tmp_path, "m", "candidate"),
        lambda: promote(tmp_path, "m", 2, alias="archived"),
    ):
        op()
        snapshot()
    for (before, inode_before), (after, inode_after) in itertools.pairwise(snapshots):
        assert after.startswith(before) and len(after) > len(before)  # earlier lines untouched
        assert inode_after == inode_before  # appended in place, never replaced by a rewritten copy
    records = read_audit(tmp_path, "m")
    assert [r["action"] for r in records] == ["publish"] * 3 + ["promote"] * 3 + ["rollback", "promote", "archive"]
    assert [r["actor"] for r in records[3:]] == ["ada", "bob", "ada", "carol", "ada", "ada"]
    rb = records[6]
    assert (rb["alias"], rb["from_version"], rb["to_version"]) == ("production", 2, 1)
    assert all(r["at"] and r["model"] == "m" for r in records)
    promote(tmp_path, "m", 3)  # already production: nothing changes, nothing is logged
    assert len(read_audit(tmp_path, "m")) == len(records)


def test_a_crash_while_writing_aliases_keeps_the_old_file(tmp_path, monkeypatch):
    publish(tmp_path, 2)
    promote(tmp_path, "m", 1)
    before = (tmp_path / "m" / ALIASES_FILE).read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        promote(tmp_path, "m", 2)
    monkeypatch.undo()
    assert (tmp_path / "m" / ALIASES_FILE).read_bytes() == before
    assert not list((tmp_path / "m").glob(f".{ALIASES_FILE}.tmp-*"))
    assert read_alias_state(tmp_path, "m").production == 1
    assert [r["action"] for r in read_audit(tmp_path, "m")] == ["publish", "publish", "promote"]


def test_atomic_write_json_replaces_content(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def _promote_many(models_dir, worker: int, n: int) -> None:
    for i in range(n):
        promote(models_dir, "m", 1 + (worker + i) % 3, actor=f"worker-{worker}")


def test_concurrent_promoters_never_lose_an_update(tmp_path):
    """Four processes promote at once; every audited change must be in the production history."""
    publish(tmp_path, 3)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_promote_many, args=(tmp_path, w, 15)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    promotes = [r for r in read_audit(tmp_path, "m") if r["action"] == "promote"]
    state = read_alias_state(tmp_path, "m")
    assert len(promotes) == len(state.production_history) > 0
    assert [r["to_version"] for r in promotes] == list(state.production_history)
    assert state.production == promotes[-1]["to_version"]
    # each record's from_version is the previous record's to_version: no interleaved read-modify-write
    assert all(b["from_version"] == a["to_version"] for a, b in itertools.pairwise(promotes))


def test_changes_report_what_serving_should_load(tmp_path):
    publish(tmp_path, 2)
    assert serving_version(tmp_path, "m").version == 2  # nothing promoted yet: the newest version
    first = promote(tmp_path, "m", 1)
    assert (first.from_version, first.to_version, first.alias) == (None, 1, "production")
    assert aliases_module.AliasChange is type(first)
    assert serving_version(tmp_path, "m").version == 1  # production wins over "latest" once promoted
