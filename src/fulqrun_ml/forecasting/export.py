"""Export a forecasting run to one ONNX graph (network + conformal offsets + clamp), check it against
PyTorch in ONNX Runtime, and publish it atomically into the registry.

Graph: inputs `history` [B, L] float32 (revenue per period, oldest first), `calendar` [B, H, C] float32
(covariates of the H periods to forecast:
`windows.future_calendar(last observed period, freq, H)`), `series` [B] int64 (`series_index.json`
position + 1; 0 for a series the model has not seen); output `quantiles` [B, H, Q] float32 in revenue
units, calibrated, monotone and non-negative. The batch axis is dynamic.

The published version holds model.onnx, net_state.pt, net_config.json, conformal.json, series_index.json,
metrics.json (backtest + parity), lineage.json; the registry adds metadata.json and MODEL_CARD.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from fulqrun_ml.data.snapshot_files import read_snapshot_arrays
from fulqrun_ml.errors import ExportParityError
from fulqrun_ml.export.onnx_export import torch_to_onnx
from fulqrun_ml.export.package import finished_run, publish_run
from fulqrun_ml.forecasting.build import build_forecaster
from fulqrun_ml.forecasting.windows import CALENDAR_FEATURES
from fulqrun_ml.models.forecaster import ConformalForecaster
from fulqrun_ml.registry.store import ModelVersion

INPUT_NAMES = ("history", "calendar", "series")
OUTPUT_NAME = "quantiles"
RUN_FILES = ("net_state.pt", "net_config.json", "conformal.json", "series_index.json", "backtest.npz")
# Relative to each window's scale (its mean absolute lookback): float32 revenue in the millions carries
# ~1e-7 relative rounding, so this bounds real disagreement, not arithmetic noise.
PARITY_TOLERANCE = 1e-5


def load_calibrated_forecaster(run_dir: Path) -> ConformalForecaster:
    """The run's best network wrapped with its conformal offsets, in eval mode."""
    net_config = json.loads((run_dir / "net_config.json").read_text())
    net = build_forecaster(net_config)
    net.load_state_dict(torch.load(run_dir / "net_state.pt", weights_only=True))
    conformal = json.loads((run_dir / "conformal.json").read_text())
    offsets = torch.tensor(conformal["series_offsets"], dtype=torch.float32)
    return ConformalForecaster(net, offsets, float(conformal.get("min_scale", 1.0))).eval()


def export_forecaster_onnx(model: ConformalForecaster, n_calendar: int = len(CALENDAR_FEATURES)) -> onnx.ModelProto:
    """torch.export-based ONNX export with a dynamic batch axis on every input; `n_calendar` is the covariate
    count (the CRM calendar's 4, or a series table's calendar + known-future + static one-hot columns)."""
    net: Any = model.net
    example = (
        torch.ones(2, net.lookback, dtype=torch.float32),
        torch.zeros(2, net.horizon, n_calendar, dtype=torch.float32),
        torch.ones(2, dtype=torch.int64),
    )
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    graph = torch_to_onnx(model, example, list(INPUT_NAMES), [OUTPUT_NAME], ({0: batch}, {0: batch}, {0: batch}))
    onnx.checker.check_model(graph)
    return graph


def onnx_quantiles(graph: onnx.ModelProto, windows: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "history": windows["history"].astype(np.float32),
        "calendar": windows["calendar"].astype(np.float32),
        "series": windows["series"].astype(np.int64),
    }
    return session.run([OUTPUT_NAME], feeds)[0]


def check_forecast_parity(
    graph: onnx.ModelProto, model: ConformalForecaster, windows: dict[str, np.ndarray], min_scale: float = 1.0
) -> float:
    """Max |ONNX - PyTorch| / window scale over the given windows; raises above PARITY_TOLERANCE."""
    with torch.no_grad():
        expected = model(
            torch.as_tensor(windows["history"], dtype=torch.float32),
            torch.as_tensor(windows["calendar"], dtype=torch.float32),
            torch.as_tensor(windows["series"], dtype=torch.int64),
        ).numpy()
    got = onnx_quantiles(graph, windows)
    scale = np.maximum(np.abs(windows["history"]).mean(axis=1), min_scale)[:, None, None]
    diff = float(np.max(np.abs(got - expected) / scale)) if len(expected) else 0.0
    if not diff <= PARITY_TOLERANCE:
        raise ExportParityError(f"ONNX and PyTorch forecasts differ by {diff:.2e} of scale (> {PARITY_TOLERANCE})")
    return diff


def export_forecast_run(
    run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
) -> tuple[ModelVersion, float]:
    """Export, check parity on the run's backtest windows, publish. Returns the version and the parity.
    `options` (--optimize/--quantize/--tensorrt) apply to tabular graphs and are refused by name."""
    run_dir = Path(run_dir)
    record = finished_run(run_dir, RUN_FILES, options, "forecasting run")
    model = load_calibrated_forecaster(run_dir)
    n_calendar = int(record.net_config.get("n_calendar", len(CALENDAR_FEATURES)))
    graph = export_forecaster_onnx(model, n_calendar)
    windows = read_snapshot_arrays(run_dir / "backtest.npz")
    parity = check_forecast_parity(graph, model, windows, model.min_scale)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    metrics["export_parity_max_rel_diff"] = parity
    conformal = json.loads((run_dir / "conformal.json").read_text())

    net_config = record.net_config
    metadata = {
        "inputs": [
            {"name": "history", "dtype": "float32", "shape": [-1, net_config["lookback"]]},
            {"name": "calendar", "dtype": "float32", "shape": [-1, net_config["horizon"], n_calendar]},
            {"name": "series", "dtype": "int64", "shape": [-1]},
        ],
        "outputs": [
            {"name": OUTPUT_NAME, "dtype": "float32", "shape": [-1, net_config["horizon"], len(conformal["quantiles"])]}
        ],
        "calendar_features": (json.loads((run_dir / "series_index.json").read_text()).get("table") or {}).get(
            "covariates", list(CALENDAR_FEATURES)
        ),
        "quantiles": conformal["quantiles"],
        "interval": conformal["interval"],
        "series": record.extra.get("series"),
        "backtest": {
            level: {k: by_who.get("model", {}).get(k) for k in ("wape", "mase", "pinball", "coverage")}
            for level, by_who in metrics.items()
            if isinstance(by_who, dict) and "model" in by_who
        },
        "parity_max_rel_diff": parity,
    }
    copies = ("net_state.pt", "conformal.json", "series_index.json")
    return publish_run(models_dir, name, run_dir, record, graph, copies, metrics, metadata), parity
