"""Future quantiles per series from a published series-table forecaster (its model.onnx, as served).

    python -m fulqrun_ml.forecasting.series_predict --model-dir models/forecast/1 --input sales.csv \
        --output forecast.csv

The input is the same long table the model was trained on (same columns), read with the same rules; each
series' last `lookback` observed periods are its history, and the H periods after the table's last observation
are forecast. Known-future covariates for those periods must be in the table as rows with an empty target
(an error names the column and series otherwise); calendar features come from the dates. A series the model has
not seen gets the unseen-series embedding and the widest conformal offsets (how the graph is built). With a
hierarchy, every level is forecast and the medians are made coherent bottom-up by default (`--reconcile none`
keeps the base forecasts). Output: one row per (series, future period): the id columns, `level`, the time
column and one column per quantile (`q0.1`, ...), written atomically (CSV or Parquet by suffix).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from pandas.tseries.frequencies import to_offset

from fulqrun_ml.data.series_table import (
    KEY_SEP,
    SeriesTableError,
    SeriesTableSpec,
    build_series_table,
    read_series_table,
)
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.export import OUTPUT_NAME
from fulqrun_ml.forecasting.reconcile import bottom_up_projection, reconcile_quantiles
from fulqrun_ml.forecasting.series_datamodule import period_calendar
from fulqrun_ml.registry.locking import atomic_write_text


def load_series_model(model_dir: Path) -> tuple[ort.InferenceSession, dict[str, Any], dict[str, Any]]:
    """(session, series_index.json, conformal.json) of a published version (or a run exported to one)."""
    model_dir = Path(model_dir)
    for name in ("model.onnx", "series_index.json", "conformal.json"):
        if not (model_dir / name).is_file():
            raise FulqrunMLError(f"field 'model_dir': {model_dir} has no {name} (export the run first)")
    index = json.loads((model_dir / "series_index.json").read_text())
    if "table" not in index:
        raise FulqrunMLError(f"field 'model_dir': {model_dir} is not a series-table forecaster (no table spec)")
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session, index, json.loads((model_dir / "conformal.json").read_text())


def _static_onehot(table: Any, stored_vocab: dict[str, list[str]], static_cols: list[str]) -> np.ndarray:
    parts = []
    for j, col in enumerate(static_cols):
        vocab = stored_vocab[col]
        seen = table.static_vocab[col] + ["mixed"]
        codes = []
        for code in table.static[:, j]:
            value = seen[code]
            if value != "mixed" and value not in vocab:
                raise SeriesTableError(f"field 'static_cols': column '{col}' has value {value!r} unseen in training")
            codes.append(len(vocab) if value == "mixed" else vocab.index(value))
        parts.append(np.eye(len(vocab) + 1)[codes])
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(table.groups), 0))


def future_inputs(frame: pd.DataFrame, index: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray], pd.DatetimeIndex]:
    """(table, graph feeds, the H future period starts) for every series of the input table."""
    spec_json = index["table"]
    lookback, horizon = int(spec_json["lookback"]), int(spec_json["horizon"])
    spec = SeriesTableSpec(
        id_cols=tuple(spec_json["id_cols"]),
        time_col=spec_json["time_col"],
        target=spec_json["target"],
        known_future_cols=tuple(spec_json["known_future_cols"]),
        static_cols=tuple(spec_json["static_cols"]),
        hierarchy=tuple(spec_json["hierarchy"]),
        short_series="error",
        min_length=lookback,
    )
    table = build_series_table(frame, spec)
    last = table.n_observed - 1
    history = table.values[:, last - lookback + 1 : last + 1]
    if not np.isfinite(history).all():
        bad = table.groups[int(np.flatnonzero(~np.isfinite(history).all(axis=1))[0])]
        raise SeriesTableError(f"field '{spec.target}': series '{bad}' has no value in the table's last period")
    future = pd.date_range(table.periods[last], periods=horizon + 1, freq=to_offset(table.freq))[1:]
    calendar = np.broadcast_to(period_calendar(future, table.freq), (len(table.groups), horizon, 4))
    parts = [calendar]
    if spec.known_future_cols:
        if len(table.periods) < table.n_observed + horizon:
            raise SeriesTableError(
                f"field 'known_future_cols': column '{spec.known_future_cols[0]}' needs rows for the {horizon} periods "
                f"after {table.periods[last].date()} (empty target) for every series"
            )
        parts.append(table.known[:, table.n_observed : table.n_observed + horizon])
    static = _static_onehot(table, spec_json["static_vocab"], list(spec.static_cols))
    parts.append(np.broadcast_to(static[:, None, :], (len(table.groups), horizon, static.shape[1])))
    groups = {g: i + 1 for i, g in enumerate(index["groups"])}
    feeds = {
        "history": history.astype(np.float32),
        "calendar": np.concatenate(parts, axis=2).astype(np.float32),
        "series": np.array([groups.get(g, 0) for g in table.groups], dtype=np.int64),
    }
    return table, feeds, future


def predict_series(model_dir: Path, input_path: Path, reconcile: str = "bottom_up") -> pd.DataFrame:
    """The long forecast table (see the module docstring)."""
    session, index, conformal = load_series_model(model_dir)
    spec_json = index["table"]
    frame = read_series_table(input_path)
    table, feeds, future = future_inputs(frame, index)
    quantiles = np.asarray(session.run([OUTPUT_NAME], feeds)[0], dtype=np.float64)
    levels = conformal["quantiles"]
    if table.summing is not None and reconcile == "bottom_up":
        centre = min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))
        quantiles = reconcile_quantiles(quantiles, table.summing, bottom_up_projection(table.summing), centre)
    elif reconcile not in ("none", "bottom_up"):
        raise FulqrunMLError(f"field 'reconcile': {reconcile!r} is not 'bottom_up' or 'none'")
    quantiles = np.maximum(np.maximum.accumulate(quantiles, axis=-1), 0.0)
    rows = []
    id_cols = spec_json["id_cols"]
    for g, group in enumerate(table.groups):
        ids = group.split(KEY_SEP) if group != "total" else []
        for h, start in enumerate(future):
            row: dict[str, Any] = {c: (ids[k] if k < len(ids) else None) for k, c in enumerate(id_cols)}
            row |= {"level": table.levels[g], spec_json["time_col"]: start.date().isoformat()}
            row |= {f"q{q:g}": float(quantiles[g, h, k]) for k, q in enumerate(levels)}
            rows.append(row)
    return pd.DataFrame(rows)


def write_forecast(frame: pd.DataFrame, output: Path) -> None:
    """CSV or Parquet by suffix, published atomically (a reader sees the old file or the whole new one)."""
    suffix = output.suffix.lower()
    if suffix == ".csv":
        atomic_write_text(output, frame.to_csv(index=False))
    elif suffix in (".parquet", ".pq"):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(output)
    else:
        raise FulqrunMLError(f"field 'output': {output.name} must end in .csv or .parquet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--reconcile", choices=["bottom_up", "none"], default="bottom_up")
    args = parser.parse_args(argv)
    try:
        forecast = predict_series(args.model_dir, args.input, args.reconcile)
        write_forecast(forecast, args.output)
    except FulqrunMLError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(f"wrote {len(forecast)} forecast rows to {args.output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
