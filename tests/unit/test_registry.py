import pytest

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.store import get_version, list_versions, publish_version


def write_model(tmp):
    (tmp / "model.onnx").write_bytes(b"onnx")


def test_versions_count_up_and_latest_is_newest(tmp_path):
    first = publish_version(tmp_path, "m", write_model, {"auc": 0.7})
    second = publish_version(tmp_path, "m", write_model, {"auc": 0.8})
    assert (first.version, second.version) == (1, 2)
    assert list_versions(tmp_path, "m") == [1, 2]
    latest = get_version(tmp_path, "m")
    assert latest.version == 2 and latest.metadata["auc"] == 0.8
    assert get_version(tmp_path, "m", 1).metadata["auc"] == 0.7
    assert (latest.path / "model.onnx").read_bytes() == b"onnx"


def test_a_failed_publish_leaves_nothing_behind(tmp_path):
    publish_version(tmp_path, "m", write_model, {})

    def crash(tmp):
        (tmp / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish_version(tmp_path, "m", crash, {})
    assert list_versions(tmp_path, "m") == [1]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_incomplete_directories_are_not_versions(tmp_path):
    (tmp_path / "m" / "7").mkdir(parents=True)  # no metadata.json: never finished
    (tmp_path / "m" / ".tmp-abc").mkdir()
    assert list_versions(tmp_path, "m") == []
    with pytest.raises(RegistryError, match="no published versions"):
        get_version(tmp_path, "m")


def test_unknown_version_is_a_clear_error(tmp_path):
    publish_version(tmp_path, "m", write_model, {})
    with pytest.raises(RegistryError, match="no version 5"):
        get_version(tmp_path, "m", 5)
