"""`fulqrun-ml predict`: score a file of records through a running Triton and answer one JSON object per record,
or (`--ids`) score entities by id through `<model>_by_id`, whose features come from the online store.

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

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import SURVIVAL_OUTPUTS, Protocol

ID_COLUMNS = ("id", "opportunity_id", "lead_id", "account_id")


def read_records(path: Path) -> pd.DataFrame:
    """CSV, Parquet, or JSON lines (anything else), by file suffix.

    A missing or unreadable file is the user's input error, so it is one line naming the file, not a pandas
    traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise FulqrunMLError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    kind = {".csv": "CSV", ".parquet": "Parquet"}.get(suffix, "JSON lines")
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise FulqrunMLError(f"{path}: not readable as {kind} ({type(exc).__name__}: {str(exc)[:200]})") from None


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


def read_ids(source: str) -> list[str]:
    """`--ids`: an existing file (one id per line; or CSV, Parquet, JSON lines with an id column), else a
    comma-separated list. Blank entries are dropped."""
    path = Path(source)
    if not path.is_file():
        return [part.strip() for part in source.split(",") if part.strip()]
    if path.suffix.lower() in (".csv", ".parquet", ".jsonl", ".json"):
        records = read_records(path)
        column = next((c for c in ID_COLUMNS if c in records.columns), None)
        if column is None:
            raise FulqrunMLError(f"{path} has no id column (one of {', '.join(ID_COLUMNS)})")
        return [str(v).strip() for v in records[column].dropna() if str(v).strip()]
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _json_value(value: float | tuple[float, ...]) -> float | list[float | None] | None:
    """NaN (an unscored row) is JSON null, not the invalid literal NaN."""
    if isinstance(value, tuple):
        return [None if v != v else round(v, 6) for v in value]
    return None if value != value else round(value, 6)


def predict_ids(source: str, url: str, model: str, protocol: Protocol = "http") -> Iterator[str]:
    """One JSON line per id: id, status (ok | stale | unknown | invalid), as_of, then the model's outputs."""
    ids = read_ids(source)
    if not ids:
        raise FulqrunMLError(f"--ids '{source}' holds no ids")
    with TritonPredictionClient(url, model, protocol=protocol) as client:
        rows = client.predict_by_id(ids)
    for row in rows:
        outputs = {name: _json_value(value) for name, value in row.outputs.items()}
        yield json.dumps({"id": row.id, "status": row.status, "as_of": row.as_of, **outputs})
