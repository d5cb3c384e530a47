"""Score deal records that carry MEDDPICC history and note text through the served `deal_win_meddpicc` model.

The file is JSON lines, one deal per line, in the record format of `serving/text_fields.py`. Each line is read
as bytes and decoded with `surrogateescape`, so a note that is not valid UTF-8 reaches the text check and is
refused naming its field (`records[3].notes[0]: wrong encoding ...`), not as a decoder stack trace; a line that
is not JSON is refused naming the file and line. Nothing is sent until every record passed, so a bad record
never leaves half a batch scored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import Protocol
from fulqrun_ml.serving.text_fields import meddpicc_model_inputs

ECHO = ("opportunity_id", "id")


def read_meddpicc_records(path: str | Path) -> list[Any]:
    """The JSON objects of a JSON-lines file (blank lines skipped); errors name the file and line."""
    records = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", "surrogateescape").strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise FulqrunMLError(f"{path}, line {number}: not a JSON object ({err.msg})") from None
    return records


def predict_meddpicc_records(
    records: list[Any], url: str, model: str = "deal_win_meddpicc", protocol: Protocol = "http",
    now: pd.Timestamp | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One answer per record: its echoed id, then the model's first output (the win probability)."""
    features = meddpicc_model_inputs(records, now)
    with TritonPredictionClient(url, model, protocol=protocol) as client:
        output = client.interface.outputs[0]
        scores = client.predict(features)
    answers = []
    for record, score in zip(records, scores, strict=True):
        echoed = {k: record[k] for k in ECHO if k in record}
        answers.append({**echoed, output: round(float(score), 6)})
    return answers


def predict_meddpicc_file(
    path: str | Path, url: str, model: str = "deal_win_meddpicc", protocol: Protocol = "http"
) -> Iterator[str]:
    """JSON lines out, one per record of `path`; a bad record raises FieldValidationError before any request."""
    records = read_meddpicc_records(path)
    if not records:
        raise FieldValidationError(str(path), "holds no records")
    for answer in predict_meddpicc_records(records, url, model, protocol):
        yield json.dumps(answer)
