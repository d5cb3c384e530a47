import json

import pytest

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.model_card import MODEL_CARD_FILE
from fulqrun_ml.registry.store import get_version, list_versions, publish_version


def write_model(tmp):
    (tmp / "model.onnx").write_bytes(b"onnx")


def version_dirs(root):
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_versions_count_up_and_latest_is_newest(tmp_path):
    first = publish_version(tmp_path, "m", write_model, {"auc": 0.7})
    second = publish_version(tmp_path, "m", write_model, {"auc": 0.8})
    assert (first.version, second.version) == (1, 2)
    assert list_versions(tmp_path, "m") == [1, 2]
    latest = get_version(tmp_path, "m")
    assert latest.version == 2 and latest.metadata["auc"] == 0.8
    assert get_version(tmp_path, "m", 1).metadata["auc"] == 0.7
    assert get_version(tmp_path, "m", "1").version == 1
    assert (latest.path / "model.onnx").read_bytes() == b"onnx"


def test_a_failed_publish_leaves_nothing_behind(tmp_path):
    publish_version(tmp_path, "m", write_model, {})

    def crash(tmp):
        (tmp / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish_version(tmp_path, "m", crash, {})
    assert list_versions(tmp_path, "m") == [1]
    assert version_dirs(tmp_path / "m") == ["1"]  # no .tmp-* directory left
    assert [r["action"] for r in read_audit(tmp_path, "m")] == ["publish"]  # the failed one is not audited


def test_incomplete_directories_are_not_versions(tmp_path):
    (tmp_path / "m" / "7").mkdir(parents=True)  # no metadata.json: never finished
    (tmp_path / "m" / ".tmp-abc").mkdir()
    assert list_versions(tmp_path, "m") == []
    with pytest.raises(RegistryError, match="no published versions"):
        get_version(tmp_path, "m")


def test_a_foreign_directory_in_the_way_is_skipped_not_overwritten(tmp_path):
    publish_version(tmp_path, "m", write_model, {})
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "2" / "notes.txt").write_text("someone else's")
    third = publish_version(tmp_path, "m", write_model, {})
    assert third.version == 3 and list_versions(tmp_path, "m") == [1, 3]
    assert (tmp_path / "m" / "2" / "notes.txt").read_text() == "someone else's"


def test_unknown_version_is_a_clear_error(tmp_path):
    publish_version(tmp_path, "m", write_model, {})
    with pytest.raises(RegistryError, match="no version 5"):
        get_version(tmp_path, "m", 5)
    with pytest.raises(RegistryError, match=r"'newest' .* not a number, 'latest' or one of"):
        get_version(tmp_path, "m", "newest")
    with pytest.raises(RegistryError, match="no 'production' version yet"):
        get_version(tmp_path, "m", "production")


def test_publish_writes_a_model_card_inside_the_version_and_audits_it(tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "ada")

    def write(tmp):
        write_model(tmp)
        (tmp / "metrics.json").write_text(json.dumps({"model": {"auc": 0.8123, "ece": 0.02, "n": 10}}))

    version = publish_version(tmp_path, "m", write, {"task": "deal_win", "data_hash": "abc"})
    card = (version.path / MODEL_CARD_FILE).read_text()
    assert card.startswith("# Model card: m v1") and "0.8123" in card
    (record,) = read_audit(tmp_path, "m")
    assert record["actor"] == "ada" and record["action"] == "publish" and record["to_version"] == 1
    assert record["data_hash"] == "abc" and record["at"]
    other = publish_version(tmp_path, "m", write_model, {}, actor="ci-bot")
    assert read_audit(tmp_path, "m")[-1]["actor"] == "ci-bot" and other.version == 2
