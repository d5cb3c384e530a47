"""Every pipeline through the one `train()` on a GPU and on the same host's CPU: the spine is device-agnostic.

`python -m fulqrun_ml.benchmarks.gpu_spine --out reports` trains the tabular (deal win, close-timing survival),
sequence-fusion and forecast pipelines with `trainer=gpu` (bf16) and `trainer=cpu` (fp32) on the same small
simulated CRM, exports each run through its pipeline (ONNX parity checked on the CPU, as serving runs it) and
writes `gpu_spine.json`: per run the device, headline metrics, fit seconds, epochs and export parity. Runs on
the lent GPU machine (scripts/gpu_spine.sh); on a host without CUDA it records the CPU runs and says why the GPU
ones are missing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fulqrun_ml.machine import machine_info
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import compose_config
from fulqrun_ml.training.train import train

SMALL = ["logger=none", "trainer.enable_progress_bar=false", "data.source.n_opportunities=3000"]
RUNS: dict[str, list[str]] = {
    "deal_win/mlp": ["task=deal_win", "model=mlp"],
    "close_timing_survival/tabm": ["task=close_timing_survival", "model=tabm"],
    "deal_win_sequence/sequence_fusion": [
        "task=deal_win_sequence",
        "model=sequence_fusion",
        "task.sequence.max_len=32",
    ],
    "revenue_forecast/nbeats": ["experiment=revenue_forecast_weekly_nbeats", "model.ensemble=2"],
}
TRAINERS = {"gpu": ["trainer=gpu"], "cpu": ["trainer=cpu"]}


def run_one(name: str, trainer: str, workdir: Path, max_epochs: int) -> dict[str, Any]:
    """Train one run on one device, export it through its pipeline; the row of the report."""
    out = workdir / name.replace("/", "-") / trainer
    overrides = [*RUNS[name], *SMALL, *TRAINERS[trainer], f"trainer.max_epochs={max_epochs}"]
    cfg = compose_config("train", [*overrides, f"paths.output_dir={out}", f"paths.root_dir={workdir}"])
    t0 = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - t0
    pipeline = load_pipeline(result["run_dir"])
    version, parity = pipeline.export(result["run_dir"], workdir / "models", f"{name.split('/')[0]}_{trainer}")
    return {
        "run": name,
        "trainer": trainer,
        "pipeline": result["pipeline"],
        "kind": result["kind"],
        "precision": str(cfg.trainer.precision),
        "headline": pipeline.headline(result["metrics"]),
        "objective": pipeline.objective(result["metrics"]),
        "epochs": result["epochs"],
        "fit_seconds": result["seconds"]["fit"],
        "wall_seconds": round(seconds, 1),
        "export_parity": parity,
        "version": version.version,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="reports", help="where gpu_spine.json goes")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--max-epochs", type=int, default=5)
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="fulqrun-gpu-spine-") as tmp:
        for name in args.runs:
            for trainer in TRAINERS:
                if trainer == "gpu" and not gpu:
                    skipped.append({"run": name, "trainer": trainer, "why": "no CUDA device on this host"})
                    continue
                rows.append(run_one(name, trainer, Path(tmp), args.max_epochs))
                print(json.dumps(rows[-1]), flush=True)
    report = {
        "what": "every pipeline through the one train() on GPU (bf16) and CPU (fp32), same data and seed; "
        "export parity checked on CPU with onnxruntime",
        "device": torch.cuda.get_device_name(0) if gpu else None,
        "max_epochs": args.max_epochs,
        "rows": rows,
        "skipped": skipped,
        "machine": machine_info(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_spine.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
