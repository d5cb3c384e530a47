#!/usr/bin/env python
"""Serving benchmark: a deal-win model and Triton's identity floor under load, HTTP (wrk) and gRPC.

    .venv/bin/python scripts/bench_serving.py                      # trains + publishes a small model first
    .venv/bin/python scripts/bench_serving.py --models-dir models  # the newest published version there
    .venv/bin/python scripts/bench_serving.py --quick              # 1 s per point, tiny concurrency

Writes reports/bench_serving.json and reports/bench_serving.png (see fulqrun_ml.serving.bench).
Every other option is passed through to `fulqrun_ml.serving.bench.main` (`--help` lists them).
The model is trained here and not in the package because the serving layer must not import training.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir

from fulqrun_ml.export.package import export_run
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving import bench
from fulqrun_ml.training.train import train

BENCH_ROOT = REPO_ROOT / "outputs" / "bench"
# The default architecture (what serving cost depends on) on a small simulated CRM (training time only).
SMALL_MODEL = [
    "data.source.n_opportunities=3000",
    "data.source.n_companies=500",
    "data.source.n_reps=20",
    "trainer.max_epochs=5",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def publish_small_model(root: Path = BENCH_ROOT, name: str = "deal_win") -> ModelVersion:
    """Train the default deal-win model on a small simulated CRM and publish it under root/models."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = root / "runs" / stamp
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={run_dir}", f"paths.root_dir={root}", *SMALL_MODEL])
    result = train(cfg)
    version, _ = export_run(Path(result["run_dir"]), root / "models", name)
    logging.getLogger("bench").info("published %s v%d at %s", version.name, version.version, version.path)
    return version


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--models-dir")
    parser.add_argument("--model", default="deal_win")
    known, rest = parser.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        return bench.main(["--help"])
    if known.models_dir is None:
        version = publish_small_model(name=known.model)
        known.models_dir = str(version.path.parents[1])
    return bench.main(["--models-dir", known.models_dir, "--model", known.model, *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
