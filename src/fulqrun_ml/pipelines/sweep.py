"""`fulqrun-ml train -m hparams_search=<name> [hparams_search.key=value ...] [train overrides]`.

The workflow around the Optuna study (`training.sweep.run_sweep`, which optimises the validation metric): the
best trial's overrides are retrained on the same data, the run is exported through its own pipeline, and the
version is registered as `candidate` (never `production`: a person promotes it after reading the sweep).

Several processes can share one study (`hparams_search.storage_env=<VAR holding a PostgreSQL URL>`): every
process runs trials until the study holds `n_trials`; those started with `hparams_search.role=worker` stop
there, and the one leader (the default role) waits for the others' trials, then retrains and registers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import CONFIG_DIR, compose_config
from fulqrun_ml.registry.aliases import promote
from fulqrun_ml.training.sweep import run_sweep
from fulqrun_ml.training.train import train

SEARCH_KEY = "hparams_search"
MULTIRUN_FLAGS = ("-m", "--multirun")


@dataclass(frozen=True)
class SweepRequest:
    """A sweep command line taken apart: the search space, its overrides and the training overrides."""

    name: str
    search_overrides: list[str]
    train_overrides: list[str]

    @classmethod
    def parse(cls, argv: list[str]) -> SweepRequest:
        names = [a.split("=", 1)[1] for a in argv if a.startswith(f"{SEARCH_KEY}=")]
        if not names:
            raise FulqrunMLError(f"a sweep needs {SEARCH_KEY}=<name> (a file in configs/{SEARCH_KEY}/)")
        return cls(
            name=names[0],
            search_overrides=[a.removeprefix(f"{SEARCH_KEY}.") for a in argv if a.startswith(f"{SEARCH_KEY}.")],
            train_overrides=[a for a in argv if not a.startswith(SEARCH_KEY) and a not in MULTIRUN_FLAGS],
        )


def is_sweep(argv: list[str]) -> bool:
    """Whether a `train` command line asks for the Optuna workflow rather than one run."""
    return any(a.startswith(f"{SEARCH_KEY}=") for a in argv)


def sweep_and_register(argv: list[str]) -> tuple[dict[str, Any], Path]:
    """Run the study, retrain its best trial, export it and register it as `candidate`.

    Returns the summary (also written to <log_dir>/<task>/sweeps/<name>_<time>/sweep.json, with sweep.md and
    sweep.png next to it) and that directory."""
    request = SweepRequest.parse(argv)
    path = CONFIG_DIR / SEARCH_KEY / f"{request.name}.yaml"
    if not path.is_file():
        raise FulqrunMLError(f"no search space '{request.name}' ({path} does not exist)")
    search = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(request.search_overrides))
    base = compose_config("train", request.train_overrides)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    worker = f"_worker{search.worker}" if search.get("worker") else ""  # workers may start in the same second
    out = Path(base.paths.log_dir) / base.task.name / "sweeps" / f"{request.name}_{stamp}{worker}"
    summary = run_sweep(search, lambda ov: compose_config("train", ov), train, out, request.train_overrides)
    if search.get("role", "leader") == "worker":  # a shared study's helper: the leader registers the winner
        return summary, out
    best_cfg = compose_config(
        "train", [*request.train_overrides, *summary["best_overrides"], f"paths.output_dir={out}/best"]
    )
    best = train(best_cfg)
    run_dir, models_dir = Path(best["run_dir"]), Path(best_cfg.paths.models_dir)
    pipeline = load_pipeline(run_dir)
    version, _ = pipeline.export(run_dir, models_dir, best_cfg.task.name)
    promote(models_dir, version.name, version.version, alias="candidate", actor=f"sweep:{request.name}")
    summary["registered"] = {
        "name": version.name,
        "version": version.version,
        "alias": "candidate",
        "holdout": best["metrics"],
        "headline": pipeline.headline(best["metrics"]),
    }
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary, out


def sweep_report(summary: dict[str, Any], out: Path) -> str:
    """What a person reads when the sweep is done: the best trial and what was registered."""
    best = (
        f"sweep {summary['study']}: best {summary['metric']}={summary['best_value']:.4f} "
        f"with {summary['best_overrides']}"
    )
    registered = summary.get("registered")
    if registered is None:
        return f"{best}\nworker done (the leader registers the winner); see {out}/sweep.md"
    return (
        f"{best}\n"
        f"registered {registered['name']} v{registered['version']} as candidate; see {out}/sweep.md and sweep.png"
    )
