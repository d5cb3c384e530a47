"""`fulqrun-ml pretrain [--name N] [--epochs E] <train overrides>`: CoLES-pretrain the sequence encoder of a
sequence-fusion task on its own unlabelled histories and publish it to the registry.

    fulqrun-ml pretrain task=deal_win_sequence model=sequence_fusion +data.source.engagement=dynamic
    fulqrun-ml pretrain task=lead_conversion_sequence model=sequence_fusion +data.source.lead_events=true
    fulqrun-ml train task=deal_win_sequence model=sequence_fusion task.sequence.init_from=deal_win_encoder@1 \
        [task.sequence.freeze=true]
    fulqrun-ml pretrain task=events data.events_path=E.csv data.labels_path=L.csv data.entity_col=... \
        data.time_col=... data.target=... data.as_of_col=...    (a user's own event table: sequence/event_pretrain.py)

Why a command of its own: pretraining is done once per data source and reused by many fine-tunes, so the
encoder is a registry version with lineage, not a by-product of one training run. The overrides compose the same
config `fulqrun-ml train` would, so the histories come from the same source; they stop at the training split's
end (every entity created by then, its events up to then), so a later fine-tune's holdout stays unseen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.sequence.event_pretrain import pretrain_event_encoder
from fulqrun_ml.sequence.events import SequenceVocabulary
from fulqrun_ml.sequence.pretrain import (
    PretrainConfig,
    PretrainError,
    data_hash,
    pretrain_encoder,
    pretraining_histories,
    publish_pretrained_encoder,
)
from fulqrun_ml.training.train import build_pipeline


def pretrain_from_config(
    cfg: DictConfig, name: str, epochs: int, slices: str = "random"
) -> tuple[ModelVersion, dict[str, Any]]:
    """Build the task's datamodule, pretrain on histories up to its training split's end, publish `name`."""
    if "sequence" not in cfg.task:
        raise PretrainError(
            f"task={cfg.task.name} has no sequence inputs; pretrain a sequence-fusion task "
            "(task=deal_win_sequence or task=lead_conversion_sequence, model=sequence_fusion) or an event table "
            "(task=events)"
        )
    pipeline = build_pipeline(cfg)
    if cfg.task.name == "events":
        return _pretrain_event_table(cfg, pipeline, name, epochs, slices)
    datamodule = pipeline.build_datamodule(cfg)
    datamodule.setup("fit")
    cutoff = datamodule.frames["train"]["as_of"].max()
    entity = datamodule.builder.entity
    raw = pretraining_histories(datamodule.source.tables, cutoff, datamodule.max_len, 4, entity)
    vocabulary = SequenceVocabulary.fit(raw, datamodule.max_len)
    arrays = vocabulary.transform(raw)
    net = cfg.model.net
    encoder = {
        **vocabulary.sizes,
        "max_len": datamodule.max_len,
        **{k: net[k] for k in ("d_model", "n_layers", "n_heads", "ffn_factor")},
        "dropout": float(net.sequence_dropout),
    }
    config = PretrainConfig(encoder=encoder, epochs=epochs, seed=int(cfg.seed), slices=slices)
    t = time.perf_counter()
    model, losses = pretrain_encoder(arrays, config)
    lineage = {
        "data_hash": data_hash(arrays),
        "cutoff": str(cutoff),
        "entity": entity,
        "histories": len(raw["length"]),
        "source_task": str(cfg.task.name),
        "seconds": round(time.perf_counter() - t, 1),
    }
    version = publish_pretrained_encoder(Path(cfg.paths.models_dir), name, model, config, vocabulary, losses, lineage)
    return version, {**lineage, "losses": losses}


def _pretrain_event_table(
    cfg: DictConfig, pipeline: Any, name: str, epochs: int, slices: str
) -> tuple[ModelVersion, dict]:
    """A user's event table: the `EventSequenceEncoder` of `model=event_fusion` on the training entities' histories,
    each cut at its as_of (`sequence/event_pretrain.py`)."""
    pipeline.check(cfg)  # task=events swaps a tabular model group for event_fusion, as `train` does
    datamodule = pipeline.build_datamodule(cfg)
    datamodule.setup("fit")
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    t = time.perf_counter()
    model, config, losses, lineage = pretrain_event_encoder(datamodule, net, epochs, int(cfg.seed), slices=slices)
    lineage = {**lineage, "source_task": "events", "seconds": round(time.perf_counter() - t, 1)}
    models_dir = Path(cfg.paths.models_dir)
    version = publish_pretrained_encoder(models_dir, name, model, config, datamodule.encoder, losses, lineage)
    return version, {**lineage, "losses": losses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fulqrun-ml pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=None, help="registry name (default: <task>_encoder)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--slices",
        choices=("random", "suffix"),
        default="random",
        help="CoLES views: random re-dated slices (default) or the newest k events at as_of (sequence/pretrain.py)",
    )
    args, overrides = parser.parse_known_args(argv)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *overrides])
    name = args.name or f"{cfg.task.name}_encoder"
    try:
        version, record = pretrain_from_config(cfg, name, args.epochs, args.slices)
    except PretrainError as error:
        print(f"error: {error}")
        return 2
    loss = record["losses"]
    print(
        f"published {name} v{version.version} at {version.path}: {record['histories']} histories up to "
        f"{record['cutoff']}, contrastive loss {loss[0]:.4f} -> {loss[-1]:.4f} in {record['seconds']} s\n"
        f"next: fulqrun-ml train task={cfg.task.name}"
        + ("" if cfg.task.name == "events" else " model=sequence_fusion")
        + f" task.sequence.init_from={name}@{version.version} [task.sequence.freeze=true]"
    )
    return 0
