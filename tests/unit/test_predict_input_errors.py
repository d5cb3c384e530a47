"""`fulqrun-ml predict --input F`: a missing or unreadable file is one line naming it, not a pandas traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.serving.predict import read_records


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FulqrunMLError, match=r"missing\.jsonl: no such input file"):
        read_records(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("name", "body", "kind"), [("bad.jsonl", b'{"a": 1\n', "JSON lines"), ("bad.parquet", b"not parquet", "Parquet")]
)
def test_unreadable_file_is_named_with_its_format(tmp_path: Path, name: str, body: bytes, kind: str) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(FulqrunMLError, match=rf"{name}: not readable as {kind}"):
        read_records(path)


def test_readable_records_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text('{"id": "a", "amount": 1.5}\n{"id": "b", "amount": 2.0}\n')
    assert read_records(path)["amount"].tolist() == [1.5, 2.0]
