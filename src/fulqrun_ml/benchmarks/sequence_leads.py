"""Behavioural lead scoring: lead conversion with the sequence-fusion inputs vs tabular-only, on the simulator's lead
intent story (`simulate_crm(lead_events=True)`, data/simulator_lead_events.py).

    .venv/bin/python scripts/bench_sequence_leads.py --seeds 0 1 2

Builds the `task=lead_conversion_sequence model=sequence_fusion` dataset once (undecided leads every 14 days,
converted within 60 days, time split with embargo), then per seed trains through `train(cfg, datamodule=...)`:
the fused model (tabular lead features + the lead's touches and own events before as_of) and its tabular-only
ablation (same seed and recipe). Scores the holdout next to the CRM's rule score and the oracle (the lead's true
conversion probability given every latent, intent included). The paired AUC gain gets a 95% Student-t interval
over seeds. Results go under `lead_conversion` in reports/sequence_fusion.json and its Markdown.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fulqrun_ml.benchmarks.sequence_dynamic import lead_lines, t_interval
from fulqrun_ml.benchmarks.sequence_study import compose_config, diagnostics, render_markdown
from fulqrun_ml.benchmarks.study_logging import configure_study_logging
from fulqrun_ml.evaluation.logistic_baseline import fit_logistic
from fulqrun_ml.project import REPO_ROOT, git_commit
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.sequence.lead_sequences import TYPE_CODE, lead_event_stream
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.train import build_pipeline, train

LEAD_OVERRIDES = ["task=lead_conversion_sequence", "+data.source.lead_events=true"]
LEAD_STORY = (
    "`simulate_crm(lead_events=True)` (data/simulator_lead_events.py, docs/simulator.md): each lead's latent intent "
    "trend moves its conversion odds and shapes its own events (site visits, downloads, email opens and replies, "
    "form fills): rising intent puts them late in its life and shifts the mix to replies and forms; a converting "
    "lead raises its hand days before converting, a lost one goes cold. Rows: undecided leads every 14 days, label "
    "converted within 60 days."
)


def type_counts(tables: Any, index: pd.DataFrame) -> np.ndarray:
    """[N, types] point-in-time count of each touch and lead-event type per (lead_id, as_of) row (<= as_of)."""
    stream = lead_event_stream(tables)
    codes = sorted(TYPE_CODE.values())
    for code in codes:
        stream[f"n{code}"] = (stream["type"] == code).astype(np.int64)
        stream[f"n{code}"] = stream.groupby("lead_id")[f"n{code}"].cumsum()
    rows = index[["lead_id", "as_of"]].reset_index(names="row").sort_values("as_of", kind="stable")
    stream = stream.sort_values("time", kind="stable")
    merged = pd.merge_asof(rows, stream, left_on="as_of", right_on="time", by="lead_id").sort_values("row")
    return merged[[f"n{code}" for code in codes]].fillna(0).to_numpy(dtype=np.float64)


def counts_check(datamodule: Any) -> dict[str, float]:
    """Holdout AUC of logistic regression on the tabular lead features, alone and + per-type event counts: what a
    reader of counts (not timing or order) gets from the same behaviour."""
    arrays, extra = {}, {}
    for split in ("train", "test"):
        frame = datamodule.frames[split]
        arrays[split] = {**datamodule.spec.encode(frame), "target": frame["label"].to_numpy()}
        extra[split] = np.log1p(type_counts(datamodule.source.tables, frame))
    mean, std = extra["train"].mean(0), extra["train"].std(0) + 1e-9
    out = {}
    for name, add in (("tabular", False), ("tabular_plus_type_counts", True)):
        fitted = {
            split: {**a, "continuous": np.hstack([a["continuous"], (extra[split] - mean) / std])} if add else a
            for split, a in arrays.items()
        }
        model = fit_logistic(fitted["train"])
        out[f"logistic_{name}_auc"] = binary_report(model.predict(fitted["test"]), fitted["test"]["target"])["auc"]
    return out


def run(seeds: list[int], overrides: list[str]) -> dict[str, Any]:
    """Both arms per seed on one shared lead datamodule; the section for the report."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fulqrun-lead-sequence-") as tmp:
        workdir = Path(tmp)
        all_overrides = [*LEAD_OVERRIDES, *overrides]
        first = compose_config(workdir, seeds[0], all_overrides)
        datamodule = build_pipeline(first).build_datamodule(first)
        datamodule.setup("fit")
        counts = counts_check(datamodule)
        print(json.dumps(counts))
        runs = []
        for seed in seeds:
            t = time.perf_counter()
            summary = train(compose_config(workdir, seed, all_overrides), datamodule=datamodule)
            metrics = summary["metrics"]
            runs.append(
                {
                    "seed": seed,
                    "auc": {k: metrics[k]["auc"] for k in ("model", "tabular_only")},
                    "log_loss": {k: metrics[k]["log_loss"] for k in ("model", "tabular_only")},
                    "epochs": summary["epochs"],
                    "seconds": round(time.perf_counter() - t, 1),
                    "diagnostics": diagnostics(Path(summary["run_dir"]), datamodule, seed),
                }
            )
            print(json.dumps(runs[-1]))
        skip = ("model", "model_uncalibrated", "tabular_only", "sequence_gain")  # the arms and their difference
        baselines = {k: v["auc"] for k, v in metrics.items() if k not in skip and isinstance(v, dict)}
    gains = [100 * (r["auc"]["model"] - r["auc"]["tabular_only"]) for r in runs]
    return {
        "data_change": LEAD_STORY,
        "overrides": all_overrides,
        "seeds": seeds,
        "git_commit": git_commit(),
        "data": {**datamodule.sizes, "max_len": datamodule.max_len, "vocabulary": datamodule.vocabulary.sizes},
        "runs": runs,
        "auc": {arm: float(np.mean([r["auc"][arm] for r in runs])) for arm in ("model", "tabular_only")},
        "baselines_auc": {k: float(v) for k, v in baselines.items() if isinstance(v, float)},
        "auc_gain_pp": {"values": gains, **t_interval(gains)},
        "counts_only": counts,
        "diagnostics": {k: float(np.mean([r["diagnostics"][k] for r in runs])) for k in runs[0]["diagnostics"]},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--override", action="append", default=[], help="Hydra override for every run")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configure_study_logging()
    section = run(args.seeds, args.override)
    path = args.reports_dir / "sequence_fusion.json"
    report = json.loads(path.read_text())
    report["lead_conversion"] = section
    atomic_write_text(path, json.dumps(report, indent=2, default=str))
    (args.reports_dir / "sequence_fusion.md").write_text(render_markdown(report))
    print("\n".join(lead_lines(section)))
    return 0
