"""Pretraining ablation: the fused deal-win model from a CoLES-pretrained encoder vs from scratch, at few labels.

    .venv/bin/python -m fulqrun_ml.benchmarks.sequence_pretrain_study --sizes 500 1000 2000 --seeds 0 1 2

On the dynamic-engagement CRM (`simulate_crm(engagement="dynamic")`, the data where sequences carry signal):
builds the deal-win sequence dataset once, pretrains one encoder with CoLES on every deal's touches up to the end
of the training split (no label, nothing from the holdout period), publishes it to a scratch registry, then for
each labelled size N and seed keeps the training snapshots of N randomly chosen training deals (validation and
holdout unchanged) and trains through `train(cfg, datamodule=...)`: from scratch (+ its tabular-only ablation) and
from the pretrained encoder (`task.sequence.init_from`). Writes `pretraining` into reports/sequence_fusion.json and
re-renders the Markdown. The FeatureSpec and token vocabularies stay fitted on the whole training split (feature
statistics, no labels).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fulqrun_ml.benchmarks.sequence_dynamic import freeze_lines, pretraining_lines, t_interval
from fulqrun_ml.benchmarks.sequence_study import compose_config, render_markdown
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import REPO_ROOT, git_commit
from fulqrun_ml.sequence.datamodule import DealWinSequenceDataModule
from fulqrun_ml.sequence.events import SequenceVocabulary
from fulqrun_ml.sequence.pretrain import (
    PretrainConfig,
    data_hash,
    pretrain_encoder,
    pretraining_histories,
    publish_pretrained_encoder,
)
from fulqrun_ml.training.train import build_pipeline, train

DYNAMIC = "+data.source.engagement=dynamic"
ENCODER_NAME = "coles_deals"


def subset_training_entities(
    datamodule: Any, id_column: str, entities: int, seed: int, size_key: str, sort_ids: bool = False
) -> Any:
    """A shallow copy of a set-up sequence datamodule whose training split keeps only the rows of `entities`
    random training entities (`id_column`); validation and test stay whole. One subsetting for the deal and the
    event-table studies; `sort_ids` keeps each study's own draw order (and so its committed numbers)."""
    train = datamodule.frames["train"]
    ids = train[id_column].unique()
    if sort_ids:
        ids = np.sort(ids)
    chosen = np.random.default_rng(seed).choice(ids, size=min(entities, len(ids)), replace=False)
    keep = train[id_column].isin(chosen).to_numpy()
    sub = copy.copy(datamodule)
    sub.frames = {**datamodule.frames, "train": train[keep].reset_index(drop=True)}
    sub.sequences = {**datamodule.sequences, "train": {k: v[keep] for k, v in datamodule.sequences["train"].items()}}
    dataset = datamodule._datasets["train"]
    sub._datasets = {
        **datamodule._datasets,
        "train": type(dataset)({k: v.numpy()[keep] for k, v in dataset.tensors.items()}),
    }
    sub.sizes = {**datamodule.sizes, "train_rows": int(keep.sum()), size_key: len(chosen)}
    return sub


def labelled_subset(datamodule: DealWinSequenceDataModule, deals: int, seed: int) -> DealWinSequenceDataModule:
    """A shallow copy whose training split keeps only the snapshots of `deals` random training deals."""
    return subset_training_entities(datamodule, "opportunity_id", deals, seed, "train_deals")


def pretrain(datamodule: DealWinSequenceDataModule, cfg: Any, models_dir: Path, epochs: int) -> dict[str, Any]:
    """CoLES on all deals' touches up to the training split's end; published to `models_dir`."""
    cutoff = datamodule.frames["train"]["as_of"].max()
    raw = pretraining_histories(datamodule.source.tables, cutoff, datamodule.max_len, min_events=4)
    vocabulary = SequenceVocabulary.fit(raw, datamodule.max_len)
    arrays = vocabulary.transform(raw)
    net = cfg.model.net
    encoder = {
        **vocabulary.sizes,
        "max_len": datamodule.max_len,
        **{k: net[k] for k in ("d_model", "n_layers", "n_heads", "ffn_factor")},
        "dropout": float(net.sequence_dropout),
    }
    config = PretrainConfig(encoder=encoder, epochs=epochs, seed=0)
    t = time.perf_counter()
    model, losses = pretrain_encoder(arrays, config)
    seconds = time.perf_counter() - t
    lineage = {"data_hash": data_hash(arrays), "cutoff": str(cutoff), "deals": len(raw["length"])}
    version = publish_pretrained_encoder(models_dir, ENCODER_NAME, model, config, vocabulary, losses, lineage)
    return {**lineage, "losses": losses, "seconds": round(seconds, 1), "version": version.version, "epochs": epochs}


def arms(freeze_ablation: bool) -> list[tuple[str, list[str]]]:
    """scratch (with the tabular-only ablation), pretrained and fine-tuned, and (freeze ablation) pretrained and
    frozen: the encoder keeps its CoLES weights and only the fusion head and MLP learn."""
    pretrained = ["task.sequence.ablation=false", f"task.sequence.init_from={ENCODER_NAME}@latest"]
    out = [("scratch", ["task.sequence.ablation=true"]), ("pretrained", pretrained)]
    return [*out, ("frozen", [*pretrained, "task.sequence.freeze=true"])] if freeze_ablation else out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Pretrain once, then scratch vs pretrained per size and seed; returns the `pretraining` report section."""
    base = [DYNAMIC, f"paths.models_dir={workdir / 'models'}", *args.override]
    first = compose_config(workdir, args.seeds[0], base)
    datamodule = build_pipeline(first).build_datamodule(first)
    datamodule.setup("fit")
    pretrained = pretrain(datamodule, first, workdir / "models", args.epochs)
    print(json.dumps({"pretrained": pretrained}))
    rows = []
    for size in args.sizes:
        for seed in args.seeds:
            sub = labelled_subset(datamodule, size, seed)
            out: dict[str, Any] = {"deals": size, "seed": seed, "train_rows": sub.sizes["train_rows"]}
            for arm, extra in arms(args.freeze_ablation):
                cfg = compose_config(workdir / f"{arm}_{size}", seed, [*base, *extra])
                metrics = train(cfg, datamodule=sub)["metrics"]
                out[arm] = metrics["model"]["auc"]
                if "tabular_only" in metrics:
                    out["tabular_only"] = metrics["tabular_only"]["auc"]
            out["gain_pp"] = 100 * (out["pretrained"] - out["scratch"])
            out["pretrained_minus_tabular_pp"] = 100 * (out["pretrained"] - out["tabular_only"])
            if "frozen" in out:
                out["frozen_gain_pp"] = 100 * (out["frozen"] - out["scratch"])
            print(json.dumps(out))
            rows.append(out)
    summary = {}
    for size in args.sizes:
        mine = [r for r in rows if r["deals"] == size]
        summary[str(size)] = {
            **{arm: float(np.mean([r[arm] for r in mine])) for arm in ("scratch", "pretrained", "tabular_only")},
            "gain_pp": [r["gain_pp"] for r in mine],
            "gain_ci_pp": t_interval([r["gain_pp"] for r in mine]),
            "pretrained_minus_tabular_ci_pp": t_interval([r["pretrained_minus_tabular_pp"] for r in mine]),
        }
        if args.freeze_ablation:
            summary[str(size)]["frozen"] = float(np.mean([r["frozen"] for r in mine]))
            summary[str(size)]["frozen_gain_ci_pp"] = t_interval([r["frozen_gain_pp"] for r in mine])
    return {"encoder": pretrained, "runs": rows, "summary": summary, "seeds": args.seeds, "sizes": args.sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[500, 1000, 2000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8, help="CoLES pretraining epochs")
    parser.add_argument("--override", action="append", default=[], help="Hydra override for every run")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--freeze-ablation",
        action="store_true",
        help="also the frozen encoder; results go under `pretraining_freeze`, the main section is kept",
    )
    parser.add_argument(
        "--section",
        default=None,
        help="report section to write (default: pretraining, or pretraining_freeze with --freeze-ablation); "
        "fusion_goal: the deal-win fusion goal's pretrained arm, run with --sizes larger than the training deals",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fulqrun-pretrain-bench-") as tmp:
        section = run(args, Path(tmp))
    section.update(
        seconds=round(time.perf_counter() - t0, 1),
        git_commit=git_commit(),
        overrides=args.override,
        machine=machine_info(torch_threads=torch.get_num_threads()),
    )
    path = args.reports_dir / "sequence_fusion.json"
    report = json.loads(path.read_text())
    report[args.section or ("pretraining_freeze" if args.freeze_ablation else "pretraining")] = section
    path.write_text(json.dumps(report, indent=2, default=str))
    (args.reports_dir / "sequence_fusion.md").write_text(render_markdown(report))
    print("\n".join(freeze_lines(section) if args.freeze_ablation else pretraining_lines(section)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
