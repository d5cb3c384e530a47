"""Model names are directory names (issue 19 item 7): hostile names (`../x`, absolute paths, NUL, Unicode look-alikes,
hidden names, separators) reach the registry through the Python API (publish, read, audit, promote, delete, export)
and through the real `fulqrun-ml models` / `fulqrun-ml export` entry in-process. Each is either a safe name that
publishes inside `models/<name>/`, or one `RegistryError` / `error:` line naming the rule with exit code 2, and the
file tree (the registry and everything around it) is unchanged."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulqrun_ml.cli import main
from fulqrun_ml.errors import RegistryError
from fulqrun_ml.export.package import export_run
from fulqrun_ml.registry.aliases import promote, rollback
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.deletion import delete_version
from fulqrun_ml.registry.names import check_model_name
from fulqrun_ml.registry.store import get_version, list_versions, publish_version

HOSTILE = [
    "../x",
    "../../escaped",
    "..",
    ".",
    "",
    "/tmp/fulqrun-fuzz-absolute",
    "a/b",
    "a\\b",
    "a\x00b",
    ".hidden",
    "deal_win/../../x",
    "déal_win",
    "deal\u2215win",  # DIVISION SLASH looks like '/'
    "deal_win\n",
    " deal_win",
    "x" * 129,
    "-rf",
    "a..b",
]
NAMES = st.sampled_from(HOSTILE) | st.text(max_size=12)
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}", re.ASCII)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _write(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(b"not a real model")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(name=NAMES)
def test_publish_takes_a_safe_name_and_refuses_the_rest_leaving_no_trace(tmp_path_factory, name):
    sandbox = tmp_path_factory.mktemp("sandbox")
    models = sandbox / "models"
    models.mkdir()
    absolute = Path("/tmp/fulqrun-fuzz-absolute")
    before = _tree(sandbox)
    safe = bool(SAFE.fullmatch(name)) and ".." not in name
    if safe:
        version = publish_version(models, name, _write, {})
        assert version.path.parent.parent == models and version.path.parent.name == name
        assert list_versions(models, name) == [1]
        return
    with pytest.raises(RegistryError, match="is not allowed"):
        publish_version(models, name, _write, {})
    assert _tree(sandbox) == before
    assert not absolute.exists()
    calls = (
        lambda: get_version(models, name),
        lambda: list_versions(models, name),
        lambda: read_audit(models, name),
        lambda: promote(models, name, 1),
        lambda: rollback(models, name),
        lambda: delete_version(models, name, 1),
    )
    for call in calls:
        with pytest.raises(RegistryError, match="is not allowed"):
            call()
    with pytest.raises(RegistryError, match="is not allowed"):
        export_run(sandbox / "no-run", models, name)
    assert _tree(sandbox) == before


def test_the_message_shows_the_name_escaped_and_short():
    with pytest.raises(RegistryError) as caught:
        check_model_name("a\x00b" + "y" * 500)
    message = str(caught.value)
    assert "\x00" not in message and "\\x00" in message and len(message) < 400


@pytest.mark.parametrize("name", ["../x", "/etc", "a\x00b", "..", "modèle"])
@pytest.mark.parametrize("action", [["show"], ["promote"], ["rollback"], ["delete"], ["encrypt"], ["diff"]])
def test_the_models_cli_refuses_a_hostile_name_with_one_line_and_exit_2(tmp_path, capsys, monkeypatch, name, action):
    monkeypatch.setenv("FULQRUN_ENCRYPTION_KEYS", "k1:" + base64.b64encode(b"k" * 32).decode())  # `encrypt` needs keys
    models = tmp_path / "models"
    models.mkdir()
    args = {
        "show": [name],
        "promote": [name, "1"],
        "rollback": [name],
        "delete": [name, "1"],
        "encrypt": [name, "1"],
        "diff": [name, "1", "2"],
    }[action[0]]
    before = _tree(tmp_path)
    code = main(["models", "--models-dir", str(models), action[0], *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: model name") and "is not allowed" in err and "Traceback" not in err
    assert _tree(tmp_path) == before


def test_export_with_a_hostile_name_exits_2_and_writes_nothing(tmp_path, capsys):
    """Through the CLI the run directory is read first (its error comes first); `export_run` itself refuses the
    name before any export work (the hypothesis test above)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = _tree(tmp_path)
    code = main(["export", "--run-dir", str(run_dir), "--models-dir", str(tmp_path / "m"), "--name", "../escape"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert _tree(tmp_path) == before and not (tmp_path / "escape").exists()
