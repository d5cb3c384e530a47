"""The prediction log without a server: the backends' spool writer (serving/prediction_spool.py, loaded by path as
the Triton stub loads it) and the shipper into the Parquet store, with torn lines, bad lines, restarts, replays
and rotation."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.monitoring.prediction_log import decode_column, explode, read_predictions, ship
from fulqrun_ml.monitoring.prediction_store import ParquetStore, open_store
from fulqrun_ml.project import TEMPLATE_DIR
from fulqrun_ml.serving.deploy import prediction_log_options


@pytest.fixture(scope="module")
def spool_module():
    spec = importlib.util.spec_from_file_location("prediction_spool_under_test", TEMPLATE_DIR / "prediction_spool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeRequest:
    """Stands in for pb_utils.InferenceRequest (only reachable inside a Triton stub)."""

    def __init__(self, request_id: str = "", parameters: dict | None = None) -> None:
        self._id, self._parameters = request_id, json.dumps(parameters or {})

    def request_id(self) -> str:
        return self._id

    def parameters(self) -> str:
        return self._parameters


def line(mod, request_id: str, rows: int = 2, model: str = "deal_win", time: str = "2026-03-01T10:00:00+00:00"):
    """A one-request batch line, as the python-ort backend writes it."""
    head = {"model": model, "version": 3, "time": time, "latency_ms": 1.5}
    inputs = {
        "value": mod.encode_column(np.arange(rows, dtype=np.float32).reshape(-1, 1)),
        "stage": mod.scrub_categorical(["won"] * rows, {"won"}),
    }
    outputs = {"probability": mod.encode_column(np.full((rows, 1), 0.25, dtype=np.float32))}
    return mod.batch_line(head, [[request_id, rows, None]], inputs, outputs)


def test_request_identity_uses_the_client_id_or_a_fresh_uuid(spool_module):
    assert spool_module.request_identity(FakeRequest("abc"), 1) == ("abc", None)
    generated, _ = spool_module.request_identity(FakeRequest(""), 1)
    assert len(generated) > 32 and generated != spool_module.request_identity(FakeRequest(""), 1)[0]
    assert spool_module.request_identity(FakeRequest("a", {"entity_id": "o1,o2"}), 2) == ("a", ["o1", "o2"])
    assert spool_module.request_identity(FakeRequest("a", {"entity_id": "o1"}), 1) == ("a", ["o1"])
    assert spool_module.request_identity(FakeRequest("a", {"entity_id": "o1"}), 2) == ("a", None)  # never guessed


def test_categoricals_outside_the_vocabulary_are_scrubbed(spool_module):
    values = ["software", "ivan.silva@acme.com", "retail"]
    assert spool_module.scrub_categorical(values, frozenset({"software", "retail"})) == [
        "software",
        spool_module.UNSEEN,
        "retail",
    ]


def test_packed_columns_decode_to_one_value_or_list_per_row(spool_module):
    def round_trip(array):
        return decode_column(json.loads(json.dumps(spool_module.encode_column(array))), len(array))

    assert round_trip(np.array([[0.5], [0.25]], dtype=np.float32)) == [0.5, 0.25]
    assert round_trip(np.array([[0.5, 1.0]], dtype=np.float32)) == [[0.5, 1.0]]
    assert round_trip(np.array([3, 4], dtype=np.int64)) == [3, 4]
    assert round_trip(np.array([[np.nan], [1.0]], dtype=np.float32)[:, :1]) == [None, 1.0]  # NaN -> null
    assert round_trip(np.arange(6, dtype=np.float32).reshape(3, 2)[:, 1:]) == [1.0, 3.0, 5.0]  # a strided view
    with pytest.raises(ValueError, match="row count"):
        decode_column(spool_module.encode_column(np.zeros((2, 1), np.float32)), 3)


def test_spool_appends_whole_lines_and_rotates(spool_module, tmp_path):
    spool = spool_module.PredictionSpool(tmp_path, "deal_win_0_0", rotate_bytes=600)
    for k in range(6):
        spool.write(line(spool_module, f"r{k}"))
    spool.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) > 1, "never rotated"
    lines = [json.loads(raw) for f in files for raw in f.read_bytes().splitlines()]
    assert [x["requests"][0][0] for x in lines] == [f"r{k}" for k in range(6)]
    assert all(f.read_bytes().endswith(b"\n") for f in files)
    assert all(f.stat().st_mode & 0o777 == spool_module.FILE_MODE for f in files)


def test_fsync_option_writes_the_same_bytes(spool_module, tmp_path):
    spool = spool_module.PredictionSpool(tmp_path, "i", fsync=True)
    spool.write(line(spool_module, "x"))
    assert json.loads(Path(spool.path).read_bytes())["requests"] == [["x", 2, None]]


def test_ship_leaves_a_live_writers_partial_line_for_the_next_pass(spool_module, tmp_path):
    spool_dir, store = tmp_path / "spool", ParquetStore(tmp_path / "store")
    spool = spool_module.PredictionSpool(spool_dir, "i")
    first, second = line(spool_module, "a"), line(spool_module, "b")
    spool.write(first)
    os.write(spool.fd, second[:40])  # a write in progress, seen half done
    report = ship(spool_dir, store)
    assert (report.records, report.pending_bytes, report.bad_lines, report.deleted_files) == (2, 40, 0, 0)
    assert set(read_predictions(store)["request_id"]) == {"a"}
    os.write(spool.fd, second[40:])
    report = ship(spool_dir, store)  # resumes at the offset: "a" is not read again
    assert (report.lines, report.records, report.pending_bytes) == (1, 2, 0)
    frame = read_predictions(store)
    assert frame.groupby("request_id").size().to_dict() == {"a": 2, "b": 2}
    spool.close()


def test_a_dead_writers_torn_line_is_dropped_with_its_file(spool_module, tmp_path):
    """No lock held (the writer died mid-write): the unterminated tail was never acknowledged."""
    spool_dir, store = tmp_path / "spool", ParquetStore(tmp_path / "store")
    spool_dir.mkdir()
    (spool_dir / "i-1-abc.000000.jsonl").write_bytes(line(spool_module, "a") + line(spool_module, "b")[:40])
    report = ship(spool_dir, store)
    assert (report.records, report.torn_bytes, report.pending_bytes, report.deleted_files) == (2, 40, 0, 1)
    assert list(spool_dir.iterdir()) == []


def test_replay_after_lost_offsets_adds_no_duplicates(spool_module, tmp_path):
    spool_dir, store = tmp_path / "spool", ParquetStore(tmp_path / "store")
    spool_dir.mkdir()
    (spool_dir / "i-1-abc.000000.jsonl").write_bytes(b"".join(line(spool_module, f"r{k}") for k in range(5)))
    ship(spool_dir, store, delete_finished=False)
    store.forget(list(store.offsets()))  # a shipper that died before saving its offsets
    assert ship(spool_dir, store, delete_finished=False).records == 10  # shipped again: at least once
    frame = read_predictions(store)
    assert len(frame) == 10 and not frame.duplicated(["model", "request_id", "row"]).any()


def test_bad_lines_are_counted_and_skipped(spool_module, tmp_path):
    spool_dir, store = tmp_path / "spool", ParquetStore(tmp_path / "store")
    spool_dir.mkdir()
    bad = b'{"model": "deal_win", "requests": [["x", 3, null]], "inputs": {"value": [1]}}\n'  # 1 value, 3 rows
    (spool_dir / "i-1-abc.000000.jsonl").write_bytes(line(spool_module, "a") + b"not json\n" + bad)
    report = ship(spool_dir, store)
    assert (report.lines, report.bad_lines, report.records) == (3, 2, 2)


def test_finished_files_are_deleted_once_shipped(spool_module, tmp_path):
    spool_dir, store = tmp_path / "spool", ParquetStore(tmp_path / "store")
    spool = spool_module.PredictionSpool(spool_dir, "deal_win_0_0", rotate_bytes=600)
    for k in range(6):
        spool.write(line(spool_module, f"r{k}"))
    live = Path(spool.path)
    report = ship(spool_dir, store)
    assert report.deleted_files >= 1 and sorted(p.name for p in spool_dir.glob("*.jsonl")) == [live.name]
    spool.close()
    assert ship(spool_dir, store).deleted_files == 1  # unloaded: its lock is gone
    assert list(spool_dir.iterdir()) == [] and store.offsets() == {}
    assert len(read_predictions(store)) == 12


def test_read_predictions_columns_types_and_filters(spool_module, tmp_path):
    spool_dir, store = tmp_path / "spool", open_store(directory=tmp_path / "store")
    spool_dir.mkdir()
    head = {"model": "close_timing", "version": 1, "time": "2026-03-02T08:00:00+00:00", "latency_ms": 2.0}
    encode = spool_module.encode_column
    inputs = {"value": encode(np.array([[math.nan]], np.float32)), "row": encode(np.array([[7.0]], np.float32))}
    outputs = {"close_probability": encode(np.array([[0.125, 0.375]], np.float32))}
    survival = spool_module.batch_line(head, [["s1", 1, ["o9"]]], inputs, outputs)
    (spool_dir / "i-1-abc.000000.jsonl").write_bytes(line(spool_module, "a") + survival)
    ship(spool_dir, store)
    frame = read_predictions(store)
    assert list(frame.columns[:7]) == ["request_id", "row", "time", "model", "version", "entity_id", "latency_ms"]
    assert str(frame["time"].dt.tz) == "UTC"
    timing = read_predictions(store, model="close_timing")
    assert len(timing) == 1 and timing.loc[0, "entity_id"] == "o9"
    assert timing.loc[0, "close_probability"] == [0.125, 0.375]
    assert timing.loc[0, "input_row"] == 7.0  # an input named like a base column is prefixed
    assert pd.isna(timing.loc[0, "value"])  # NaN input (imputed missing) stored as null
    assert len(read_predictions(store, since=pd.Timestamp("2026-03-02", tz="UTC"))) == 1
    assert len(read_predictions(store, until=pd.Timestamp("2026-03-02", tz="UTC"))) == 2


def test_explode_splits_a_batch_into_its_requests_rows(spool_module):
    head = {"model": "m", "version": 1, "time": "2026-01-01T00:00:00+00:00", "latency_ms": 1}
    inputs = {"v": spool_module.encode_column(np.arange(3, dtype=np.float32).reshape(3, 1)), "s": ["a", "b", "c"]}
    outputs = {"p": spool_module.encode_column(np.array([[0.5], [0.25], [0.75]], np.float32))}
    raw = spool_module.batch_line(head, [["r1", 2, ["e1", "e2"]], ["r2", 1, None]], inputs, outputs)
    records = explode(json.loads(raw))
    assert [(r["request_id"], r["row"], r["entity_id"]) for r in records] == [
        ("r1", 0, "e1"),
        ("r1", 1, "e2"),
        ("r2", 0, None),
    ]
    assert [(r["inputs"], r["outputs"]) for r in records][2] == ({"v": 2.0, "s": "c"}, {"p": 0.75})
    with pytest.raises(ValueError, match="row count"):
        explode({**json.loads(raw), "requests": [["r1", 2, None]]})


def test_serving_config_threads_the_prediction_log(tmp_path):
    on = prediction_log_options({"prediction_log": {"enabled": True, "dir": str(tmp_path), "rotate_mb": 1}})
    assert on == {"spool_dir": tmp_path / "spool", "fsync": False, "rotate_bytes": 1 << 20}
    assert prediction_log_options({"prediction_log": {"enabled": False, "dir": "x"}}) is None
    assert prediction_log_options({}) is None
