"""`fulqrun-ml predict --events E.csv --queries Q.csv --model-dir DIR`: event histories scored through Triton.

The model inputs come from `sequence/event_inputs.py` (the training code's own point-in-time cut, aggregates and
sequence arrays, with the version's fitted encoder); the SDK (`TritonPredictionClient.predict(records,
sequences=...)`) sends them to the served model (the python-tensor backend) and one JSON line per query answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from fulqrun_ml.sequence.event_inputs import event_model_inputs
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import Protocol


def predict_events(
    version_dir: str | Path,
    events_path: str | Path,
    queries_path: str | Path,
    url: str,
    model: str,
    protocol: Protocol = "http",
) -> Iterator[str]:
    """One JSON line per query row: its entity and as_of, then the served model's output."""
    inputs = event_model_inputs(version_dir, events_path, queries_path)
    with TritonPredictionClient(url, model, protocol=protocol) as client:
        output = client.interface.outputs[0]
        values = client.predict(inputs.records, sequences=inputs.sequences)
    for (entity, as_of), value in zip(inputs.queries.itertuples(index=False), values, strict=True):
        yield json.dumps({"entity": entity, "as_of": str(as_of), output: round(float(value), 6)})
