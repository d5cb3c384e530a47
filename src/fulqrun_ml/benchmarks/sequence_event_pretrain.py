"""Pretraining on a user event table, measured: CoLES-pretrained + fine-tuned vs from scratch at few labels.

    python scripts/bench_events.py --pretraining --sizes 200 500 1000 --seeds 0 1 2

On the purchases/churn fixture (`data/event_fixture.py`, one draw): builds the `task=events` datamodule once,
pretrains one `EventSequenceEncoder` with CoLES on every training entity's history cut at its newest training as_of
(`sequence/event_pretrain.py`: no label, nothing from the validation or test dates), publishes it to a scratch
registry, then for each labelled size N and seed keeps the training rows of N random training entities
(validation and test unchanged) and trains the fused model through `train(cfg, datamodule=...)` from scratch and
from the pretrained encoder (`task.sequence.init_from`), LightGBM on the same aggregates and rows as the simple
baseline. The event encoder (vocabularies, scaling) and the aggregates' FeatureSpec stay fitted on the whole
training split (statistics of unlabelled histories, no labels), as in the deal-win pretraining study. Writes the
`pretraining` section of reports/sequence_user_events.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.benchmarks.sequence_pretrain_study import subset_training_entities
from fulqrun_ml.data.event_fixture import write_event_fixture
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import compose_config, git_commit
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.sequence.event_datamodule import EventTableDataModule
from fulqrun_ml.sequence.event_pretrain import pretrain_event_encoder
from fulqrun_ml.sequence.pretrain import publish_pretrained_encoder
from fulqrun_ml.training.train import build_pipeline, train

ENCODER_NAME = "coles_events"
GOAL_PP = 0.5
SUFFIX_READING = (
    'Why suffix views: random CoLES slices are re-dated so that their newest event is "now", so the encoder is '
    "taught to map an early and a late stretch of one customer's history to the same point, i.e. to ignore the "
    "state at as_of (days since the last purchase, the recent drift to `sale` and to smaller baskets) that precedes "
    "churn in this fixture. Suffix views are the newest k events at the history's own as_of, ages kept, so what "
    "the two views share is the recent state. This recipe was chosen after the random-slices result above (two "
    "recipes tried on the same draw and seeds), so read its interval with that selection in mind."
)


def labelled_subset(datamodule: EventTableDataModule, entities: int, seed: int) -> EventTableDataModule:
    """A shallow copy whose training split keeps only the rows of `entities` random training entities."""
    return subset_training_entities(datamodule, "entity", entities, seed, "train_entities", sort_ids=True)


def base_overrides(events: Path, labels: Path, root: Path, args: argparse.Namespace) -> list[str]:
    """The documented `task=events` command on the fixture, with the CPU-sized recipe stated in the report."""
    return [
        "task=events",
        "model=event_fusion",
        f"data.events_path={events}",
        f"data.labels_path={labels}",
        "data.entity_col=customer_id",
        "data.time_col=ts",
        "data.target=churned",
        "data.as_of_col=as_of",
        "data.embargo_days=60",
        f"data.max_len={args.max_len}",
        f"trainer.max_epochs={args.max_epochs}",
        f"callbacks.early_stopping.patience={args.patience}",
        "trainer.enable_progress_bar=false",
        "task.ablation=false",
        "logger=none",
        f"paths.models_dir={root / 'models'}",
    ]


def pretrain(
    datamodule: EventTableDataModule, cfg: Any, models_dir: Path, epochs: int, slices: str = "random"
) -> dict[str, Any]:
    """One encoder on every training entity's cut history, published as `coles_events`."""
    net = {k: cfg.model.net[k] for k in ("d_model", "n_layers", "n_heads", "ffn_factor", "sequence_dropout")}
    t = time.perf_counter()
    model, config, losses, lineage = pretrain_event_encoder(datamodule, net, epochs, seed=0, slices=slices)
    seconds = round(time.perf_counter() - t, 1)
    version: ModelVersion = publish_pretrained_encoder(
        models_dir, ENCODER_NAME, model, config, datamodule.encoder, losses, lineage
    )
    return {
        **lineage,
        "losses": losses,
        "seconds": seconds,
        "epochs": epochs,
        "slices": slices,
        "version": version.version,
    }


def run(args: argparse.Namespace, root: Path, reuse: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pretrain once, then scratch vs pretrained per size and seed. With `reuse` (an earlier section on the same
    fixture draw, checked by its data sizes), the scratch and LightGBM numbers are taken from it instead of
    retrained: they do not depend on the pretraining, and the spine is deterministic per seed."""
    events, labels = write_event_fixture(root / "data", n_customers=args.customers, seed=args.data_seed)
    base = base_overrides(events, labels, root, args)
    first = compose_config("train", [*base, "seed=0", f"paths.output_dir={root / 'setup'}"])
    pipeline = build_pipeline(first)
    pipeline.check(first)
    datamodule = pipeline.build_datamodule(first)
    datamodule.setup("fit")
    if reuse is not None and reuse["data"] != {
        "customers": args.customers,
        "data_seed": args.data_seed,
        **datamodule.sizes,
    }:
        raise ValueError("--reuse-scratch: the earlier section was measured on another fixture draw")
    done = {(r["entities"], r["seed"]): r for r in (reuse or {}).get("runs", [])}
    encoder = pretrain(datamodule, first, root / "models", args.pretrain_epochs, args.slices)
    print(json.dumps({"pretrained": encoder}))
    arms = {"scratch": [], "pretrained": [f"task.sequence.init_from={ENCODER_NAME}@latest"]}
    rows = []
    for size in args.sizes:
        for seed in args.seeds:
            sub = labelled_subset(datamodule, size, seed)
            out: dict[str, Any] = {"entities": size, "seed": seed, "train_rows": sub.sizes["train_rows"]}
            for arm, extra in arms.items():
                if arm == "scratch" and (size, seed) in done:
                    old = done[size, seed]
                    out.update({k: old[k] for k in ("scratch", "lightgbm", "scratch_seconds") if k in old})
                    out["scratch_reused"] = True
                    continue
                compare = "task.compare_lightgbm=lightgbm_default" if arm == "scratch" else "task.compare_lightgbm=null"
                cfg = compose_config(
                    "train",
                    [*base, *extra, compare, f"seed={seed}", f"paths.output_dir={root / f'{arm}_{size}_{seed}'}"],
                )
                t = time.perf_counter()
                result = train(cfg, datamodule=sub)
                metrics = result["metrics"]
                out[f"{arm}_seconds"] = round(time.perf_counter() - t, 1)
                out[f"{arm}_epochs"] = result["epochs"]
                out[arm] = metrics["model"]["auc"]
                if "lightgbm" in metrics:
                    out["lightgbm"] = metrics["lightgbm"]["auc"]
            out["gain_pp"] = 100 * (out["pretrained"] - out["scratch"])
            print(json.dumps(out))
            rows.append(out)
    summary = {}
    for size in args.sizes:
        mine = [r for r in rows if r["entities"] == size]
        summary[str(size)] = {
            **{arm: float(np.mean([r[arm] for r in mine])) for arm in ("scratch", "pretrained", "lightgbm")},
            "train_rows": float(np.mean([r["train_rows"] for r in mine])),
            "gain_pp": t_interval([r["gain_pp"] for r in mine]),
        }
    return {
        "encoder": encoder,
        "runs": rows,
        "summary": summary,
        "seeds": args.seeds,
        "sizes": args.sizes,
        "data": {"customers": args.customers, "data_seed": args.data_seed, **datamodule.sizes},
        "recipe": {"max_len": args.max_len, "max_epochs": args.max_epochs, "patience": args.patience},
        "scratch_reused_from": "pretraining" if done else None,
    }


def markdown_lines(section: dict[str, Any] | None) -> list[str]:
    """The report's Markdown section (empty when the study has not run)."""
    if not section:
        return []
    enc, data, recipe = section["encoder"], section["data"], section["recipe"]
    lines = [
        f"## CoLES pretraining on the event table ({enc.get('slices', 'random')} slices) vs scratch at few labels "
        f"(`bench_events.py --pretraining --slices {enc.get('slices', 'random')}`)",
        "",
        f"One fixture draw ({data['customers']} customers, seed {data['data_seed']}; {data['train_rows']} training, "
        f"{data['test_rows']} test rows, time split). One `EventSequenceEncoder` (the class `task=events` "
        f"fine-tunes) pretrained with CoLES on {enc['histories']} training entities' histories, each cut at its "
        f"newest training as_of (latest {enc['cutoff']}), {enc['epochs']} epochs, {enc['seconds']} s; contrastive "
        f"loss {enc['losses'][0]} -> {enc['losses'][-1]}. Per labelled size N and seed {section['seeds']}: the "
        "training rows of N random training entities (same validation and test rows); fused model from scratch vs "
        f"from the pretrained encoder, fine-tuned (max_len {recipe['max_len']}, at most {recipe['max_epochs']} "
        f"epochs, patience {recipe['patience']}); LightGBM on the same aggregates and rows. Holdout AUC, mean over "
        "seeds"
        + (
            " (scratch and LightGBM as measured in the random-slices section: same draw, seeds and recipe):"
            if section.get("scratch_reused_from")
            else ":"
        ),
        "",
        "| labelled entities | training rows | scratch (fused) | pretrained (fused, fine-tuned) | LightGBM "
        "| pretrained − scratch (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for size, s in section["summary"].items():
        g = s["gain_pp"]
        ci = f" [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}]" if g["ci95"] else ""
        lines.append(
            f"| {size} | {s['train_rows']:.0f} | {s['scratch']:.4f} | {s['pretrained']:.4f} | {s['lightgbm']:.4f} "
            f"| {g['mean']:+.2f} pp{ci} |"
        )
    met = [size for size, s in section["summary"].items() if s["gain_pp"]["mean"] >= GOAL_PP]
    excludes = [size for size, s in section["summary"].items() if s["gain_pp"]["ci95"] and s["gain_pp"]["ci95"][0] > 0]
    lines += [
        "",
        f"Goal (pretraining adds >= {GOAL_PP} pp when labels are scarce): met on the mean at "
        f"{', '.join(met) if met else 'no size'}; the interval excludes zero at {', '.join(excludes) or 'no size'}.",
        "",
    ]
    epochs = [r["pretrained_epochs"] for r in section["runs"] if "pretrained_epochs" in r]
    if epochs:
        lines += [
            f"The pretrained fine-tunes ran {min(epochs)}–{max(epochs)} of at most {recipe['max_epochs']} epochs: the "
            "epoch cap binds, so a longer budget could move both arms.",
            "",
        ]
    if enc.get("slices") == "suffix":
        lines += [SUFFIX_READING, ""]
    machine = section.get("machine") or {}
    lines += [
        f"This study: {section.get('seconds')} s on {machine.get('cpu_model')} ({machine.get('cpu_count')} CPUs, "
        f"shared), load average {machine.get('load_average_1m_5m_15m')}.",
        "",
    ]
    return lines


def main(args: argparse.Namespace, reports_dir: Path, report_name: str, render: Any) -> int:
    """Run the study and merge its section into the existing report (the rest of the report is kept)."""
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    path = reports_dir / f"{report_name}.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    key = "pretraining" if args.slices == "random" else f"pretraining_{args.slices}"
    reuse = report.get("pretraining") if args.reuse_scratch and key != "pretraining" else None
    with tempfile.TemporaryDirectory(prefix="bench_events_pretrain_") as tmp:
        section = run(args, Path(tmp), reuse)
    section.update(seconds=round(time.perf_counter() - t0, 1), git_commit=git_commit(), machine=machine_info())
    report = json.loads(path.read_text()) if path.is_file() else {}
    report[key] = section
    atomic_write_text(path, json.dumps(report, indent=2, default=str))
    atomic_write_text(reports_dir / f"{report_name}.md", render(report))
    print("\n".join(markdown_lines(section)))
    return 0
