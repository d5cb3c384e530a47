"""`fulqrun-ml predict --events ... --output F`: the answers as one CSV or Parquet file, written whole or not at all
(the Triton round trip itself is tests/integration/test_events_serving.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.serving.event_predict import write_predictions

ROWS = [
    {"entity": "a", "as_of": "2025-01-01", "probability": 0.25},
    {"entity": "b", "as_of": "2025-01-02", "probability": 0.5},
]


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_rows_round_trip_through_the_file(tmp_path, name):
    path = write_predictions(ROWS, tmp_path / name)
    read = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert read.to_dict("records") == ROWS
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_bad_outputs_are_named_and_nothing_is_written(tmp_path):
    with pytest.raises(FulqrunMLError, match=r"--output .*out.json: the file must end in one of"):
        write_predictions(ROWS, tmp_path / "out.json")
    with pytest.raises(FulqrunMLError, match="does not exist"):
        write_predictions(ROWS, tmp_path / "missing" / "out.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "out.parquet"
    write_predictions(ROWS, path)

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_predictions(ROWS[:1], path)
    monkeypatch.undo()
    assert pd.read_parquet(path).to_dict("records") == ROWS and [p.name for p in tmp_path.iterdir()] == [path.name]
