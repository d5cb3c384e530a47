"""What the serving and scoring benchmarks run on: a small published model and realistic records for it.

The model is trained here, in the benchmark layer, because the serving layer must not import training; it
goes through `train()` and the run's own pipeline exporter, so what is benchmarked is what users publish.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import REPO_ROOT, compose_config
from fulqrun_ml.registry.run_record import version_holdout_path
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.training.train import train

log = logging.getLogger(__name__)
BENCH_ROOT = REPO_ROOT / "outputs" / "bench"
# The default architecture (what serving cost depends on) on a small simulated CRM (training time only).
SMALL_MODEL = (
    "data.source.n_opportunities=3000",
    "data.source.n_companies=500",
    "data.source.n_reps=20",
    "trainer.max_epochs=5",
    "trainer.enable_progress_bar=false",
    "logger=none",
)
CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")  # the ONNX exporter logs every optimisation pass


def configure_logging(level: int = logging.INFO) -> None:
    """Timestamped logs for a benchmark run alone (a no-op under `fulqrun-ml bench`, which configured them)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)


def publish_small_model(root: Path = BENCH_ROOT, name: str = "deal_win") -> ModelVersion:
    """Train the default deal-win model on a small simulated CRM and publish it under root/models."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = root / "runs" / stamp
    cfg = compose_config("train", [f"paths.output_dir={run_dir}", f"paths.root_dir={root}", *SMALL_MODEL])
    result = train(cfg)
    version, _ = load_pipeline(Path(result["run_dir"])).export(Path(result["run_dir"]), root / "models", name)
    log.info("published %s v%d at %s", version.name, version.version, version.path)
    return version


def benchmark_records(version: ModelVersion, n: int, seed: int = 0) -> pd.DataFrame:
    """Raw records to send: the version's holdout rows when its training run is still on disk, otherwise
    records drawn from the fitted FeatureSpec itself (numbers from the training mean/std in the model's
    own scale, categories from the vocabulary), so any published version can be benchmarked."""
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    holdout = version_holdout_path(version.path)
    if holdout is not None:
        frame = read_snapshot(holdout, columns=spec.spec.names)
        return frame.sample(n, replace=len(frame) < n, random_state=seed).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for feat in spec.spec.numeric:
        z = rng.normal(spec.means[feat.name], spec.stds[feat.name], n)
        columns[feat.name] = np.expm1(np.clip(z, 0, None)) if feat.log1p else z
    for feat in spec.spec.categorical:
        columns[feat.name] = rng.choice(spec.vocabularies[feat.name] or ["unknown"], n)
    return pd.DataFrame(columns)
