"""Roles gate registry actions: a researcher proposes candidates but cannot promote to production, roll back or
delete; an approver decides production; only an admin deletes. Every action and every refusal is audited with
who and when; a loose roles file, an unknown role and acting under another's name are refused."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.aliases import promote, rollback
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.deletion import delete_version
from fulqrun_ml.registry.roles import AccessDeniedError
from fulqrun_ml.registry.store import list_versions, publish_version


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.delenv("FULQRUN_SIGNING_KEYS", raising=False)
    models = tmp_path / "models"
    for _ in range(3):
        publish_version(models, "deal_win", lambda d: (d / "model.onnx").write_bytes(b"x"), {}, actor="ci")
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"users": {"rita": "researcher", "anna": "approver", "adam": "admin"}}))
    roles.chmod(0o644)
    monkeypatch.setenv("FULQRUN_REGISTRY_ROLES_FILE", str(roles))
    return models, roles


def as_user(monkeypatch, user):
    monkeypatch.setenv("USER", user)


def test_roles_gate_promote_rollback_and_delete(registry, monkeypatch):
    models, _ = registry
    as_user(monkeypatch, "rita")
    assert promote(models, "deal_win", 2, "candidate").to_version == 2
    with pytest.raises(AccessDeniedError, match="'rita' has role researcher; promote to production needs approver"):
        promote(models, "deal_win", 2, "production")
    as_user(monkeypatch, "anna")
    promote(models, "deal_win", 1, "production")
    promote(models, "deal_win", 2, "production")
    with pytest.raises(AccessDeniedError, match="'anna' has role approver; delete needs admin"):
        delete_version(models, "deal_win", 3)
    as_user(monkeypatch, "rita")
    with pytest.raises(AccessDeniedError, match="rollback needs approver"):
        rollback(models, "deal_win")
    as_user(monkeypatch, "adam")
    with pytest.raises(RegistryError, match="v2 is production"):
        delete_version(models, "deal_win", 2)
    delete_version(models, "deal_win", 3, reason="trained on erased data")
    assert list_versions(models, "deal_win") == [1, 2]
    as_user(monkeypatch, "anna")
    assert rollback(models, "deal_win").to_version == 1
    audit = read_audit(models, "deal_win")
    actions = [(r["action"], r["actor"]) for r in audit if r["action"] != "publish"]
    assert actions == [
        ("promote", "rita"),
        ("denied", "rita"),
        ("promote", "anna"),
        ("promote", "anna"),
        ("denied", "anna"),
        ("denied", "rita"),
        ("delete", "adam"),
        ("rollback", "anna"),
    ]
    assert all(r["at"] for r in audit) and audit[-2]["reason"] == "trained on erased data"


def test_unknown_users_impersonation_and_loose_files_are_refused(registry, monkeypatch):
    models, roles = registry
    as_user(monkeypatch, "mallory")
    with pytest.raises(AccessDeniedError, match="'mallory' has no role"):
        promote(models, "deal_win", 1, "candidate")
    with pytest.raises(AccessDeniedError, match="--actor 'anna' is not the login user 'mallory'"):
        promote(models, "deal_win", 1, "production", actor="anna")
    roles.chmod(0o666)
    with pytest.raises(RegistryError, match="writable by group or others"):
        promote(models, "deal_win", 1, "candidate")
    roles.chmod(0o644)
    roles.write_text(json.dumps({"users": {"mallory": "superuser"}}))
    with pytest.raises(RegistryError, match="unknown role"):
        promote(models, "deal_win", 1, "candidate")
    assert (
        not (models / "deal_win" / "aliases.json").exists()
        or "production" not in (models / "deal_win" / "aliases.json").read_text()
    )


def test_without_a_roles_file_everyone_may_act(tmp_path, monkeypatch):
    monkeypatch.delenv("FULQRUN_REGISTRY_ROLES_FILE", raising=False)
    models = tmp_path / "models"
    publish_version(models, "deal_win", lambda d: (d / "model.onnx").write_bytes(b"x"), {}, actor="ci")
    assert promote(models, "deal_win", 1, "production", actor="anyone").to_version == 1


def test_cli_delete_is_refused_for_an_approver_with_exit_2(registry, monkeypatch, capsys):
    from fulqrun_ml.registry.commands import models_main

    models, _ = registry
    as_user(monkeypatch, "anna")
    assert models_main(["--models-dir", str(models), "delete", "deal_win", "3"]) == 2
    assert "delete needs admin" in capsys.readouterr().err and list_versions(models, "deal_win") == [1, 2, 3]
    as_user(monkeypatch, "adam")
    assert models_main(["--models-dir", str(models), "delete", "deal_win", "3", "--reason", "erasure"]) == 0
    assert list_versions(models, "deal_win") == [1, 2]
