"""`fulqrun-ml predict --events E.csv --queries Q.csv --model-dir DIR`: event histories scored through Triton.

The model inputs come from `sequence/event_inputs.py` (the training code's own point-in-time cut, aggregates and
sequence arrays, with the version's fitted encoder); the SDK (`TritonPredictionClient.predict(records,
sequences=...)`) sends them to the served model (the python-tensor backend) and one JSON line per query answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.sequence.event_inputs import event_model_inputs
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import Protocol

OUTPUT_FORMATS = (".csv", ".parquet")


def predict_event_rows(
    version_dir: str | Path,
    events_path: str | Path,
    queries_path: str | Path,
    url: str,
    model: str,
    protocol: Protocol = "http",
) -> list[dict]:
    """One dict per query row: its entity and as_of, then the served model's output."""
    inputs = event_model_inputs(version_dir, events_path, queries_path)
    with TritonPredictionClient(url, model, protocol=protocol) as client:
        output = client.interface.outputs[0]
        values = client.predict(inputs.records, sequences=inputs.sequences)
    return [
        {"entity": entity, "as_of": str(as_of), output: round(float(value), 6)}
        for (entity, as_of), value in zip(inputs.queries.itertuples(index=False), values, strict=True)
    ]


def write_predictions(rows: list[dict], output: str | Path) -> Path:
    """The rows as CSV or Parquet (by the file's extension), published atomically; the path written."""
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise FulqrunMLError(f"--output {path}: the file must end in one of {list(OUTPUT_FORMATS)}")
    if not path.parent.is_dir():
        raise FulqrunMLError(f"--output {path}: the folder {path.parent} does not exist")
    frame = pd.DataFrame(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        frame.to_csv(tmp, index=False) if path.suffix.lower() == ".csv" else frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def predict_events(
    version_dir: str | Path,
    events_path: str | Path,
    queries_path: str | Path,
    url: str,
    model: str,
    protocol: Protocol = "http",
) -> Iterator[str]:
    """One JSON line per query row: its entity and as_of, then the served model's output."""
    for row in predict_event_rows(version_dir, events_path, queries_path, url, model, protocol):
        yield json.dumps(row)
