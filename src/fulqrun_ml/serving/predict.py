"""`fulqrun-ml predict`: score a file of records through a running Triton and answer one JSON object per record.

What the answer holds is decided by what the served model declares it returns (its Triton metadata), which
is the server's interface: a close-timing survival model answers its curve and expected days, any other
model its first output. Columns the model does not take (ids, say) are echoed back, not sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import SURVIVAL_OUTPUTS, Protocol


def read_records(path: Path) -> pd.DataFrame:
    """CSV, Parquet, or JSON lines (anything else), by file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


def _answers(client: TritonPredictionClient, features: pd.DataFrame) -> list[dict[str, Any]]:
    if set(SURVIVAL_OUTPUTS) <= set(client.interface.outputs):
        timing = client.predict_close_timing(features)
        return [
            {
                "expected_days": round(float(timing.expected_days[i]), 3),
                "close_probability": {
                    f"{edge:g}d": round(float(p), 6)
                    for edge, p in zip(timing.bin_edges[1:], timing.close_probability[i], strict=True)
                },
            }
            for i in range(len(features))
        ]
    output = client.interface.outputs[0]
    return [{output: round(float(p), 6)} for p in client.predict(features)]


def predict_file(path: Path, url: str, model: str, protocol: Protocol = "http") -> Iterator[str]:
    """One JSON line per record of `path`: its echoed non-input columns, then the model's answer."""
    records = read_records(path)
    with TritonPredictionClient(url, model, protocol=protocol) as client:
        names = {name for name, _ in client.inputs}
        # A misspelled input still fails: the correctly spelled field is then missing.
        keys = [c for c in records.columns if c not in names]
        answers = _answers(client, records[[c for c in records.columns if c in names]])
    for i, answer in enumerate(answers):
        yield json.dumps({**{k: records[k].iloc[i] for k in keys}, **answer}, default=str)
