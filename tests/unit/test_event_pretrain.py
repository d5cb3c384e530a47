"""CoLES on a user's event table (sequence/event_pretrain.py): histories cut at each training entity's as_of and
nothing later, slices that keep event-table padding, and `fulqrun-ml pretrain task=events` publishing the very
encoder class `task=events` fine-tunes, which a run then starts from (`task.sequence.init_from`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from fulqrun_ml.benchmarks.sequence_event_pretrain import labelled_subset
from fulqrun_ml.cli import main as cli_main
from fulqrun_ml.data.event_fixture import write_event_fixture
from fulqrun_ml.models.event_fusion import EventSequenceEncoder
from fulqrun_ml.pipelines.events import EventPipeline
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.sequence import pretrain as pt
from fulqrun_ml.sequence.event_datamodule import EventTableDataModule
from fulqrun_ml.sequence.event_features import PADDING_AGE
from fulqrun_ml.sequence.event_pretrain import event_lengths, event_pretraining_arrays

MAX_LEN = 8
NET = {"d_model": 8, "n_layers": 1, "n_heads": 2, "ffn_factor": 2.0, "sequence_dropout": 0.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_event_fixture(tmp_path_factory.mktemp("events"), n_customers=80, seed=7)


@pytest.fixture(scope="module")
def datamodule(files):
    events, labels = files
    dm = EventTableDataModule(str(events), str(labels), "customer_id", "ts", "churned", "as_of", max_len=MAX_LEN)
    dm.setup()
    return dm


def test_histories_are_cut_at_each_training_entitys_newest_as_of(files, datamodule):
    arrays, cut_at = event_pretraining_arrays(datamodule, min_events=2)
    events = pd.read_csv(files[0])
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    assert cut_at["entity"].is_unique and set(cut_at["entity"]) <= set(datamodule.frames["train"]["entity"])
    newest = datamodule.frames["train"].groupby("entity")["as_of"].max()
    assert (cut_at.set_index("entity")["as_of"] == newest.reindex(cut_at["entity"])).all()
    assert cut_at["as_of"].max() < datamodule.frames["test"]["as_of"].min()  # the time split's holdout is later
    lengths = event_lengths(arrays)
    for i, row in cut_at.iterrows():
        mine = events[events["customer_id"] == row["entity"]]
        # Exactly the entity's events at or before its as_of (the newest MAX_LEN of them), none after.
        assert lengths[i] == min(MAX_LEN, int((mine["ts"] <= pd.Timestamp(row["as_of"])).sum()))
    real = arrays["age_days"] != PADDING_AGE
    assert (arrays["age_days"][real] >= 0).all() and (lengths >= 2).all()


def test_event_slices_keep_the_age_padding_and_end_now(datamodule):
    arrays, _ = event_pretraining_arrays(datamodule, min_events=2)
    length = event_lengths(arrays)
    sliced = pt.random_slices(arrays, np.random.default_rng(0), 2, length, PADDING_AGE)
    size = event_lengths(sliced)
    assert (size >= np.minimum(2, length)).all() and (size <= length).all()
    assert np.allclose(sliced["age_days"][:, -1], 0.0)
    padding = np.arange(MAX_LEN)[None, :] < (MAX_LEN - size)[:, None]
    assert (sliced["age_days"][padding] == PADDING_AGE).all()
    for field in datamodule.encoder.token_fields:
        assert (sliced[field][padding] == 0).all() and (sliced[field][~padding] != 0).all()


def test_pretrain_command_publishes_what_an_event_run_starts_from(tmp_path, files, datamodule, capsys):
    events, labels = files
    data = [
        "task=events",
        "model=event_fusion",
        f"data.events_path={events}",
        f"data.labels_path={labels}",
        "data.entity_col=customer_id",
        "data.time_col=ts",
        "data.target=churned",
        "data.as_of_col=as_of",
        f"data.max_len={MAX_LEN}",
        *(f"model.net.{k}={v}" for k, v in NET.items()),
        f"paths.root_dir={tmp_path}",
    ]
    assert cli_main(["pretrain", "--epochs", "4", "--name", "shop_enc", *data]) == 0
    assert "published shop_enc v1" in capsys.readouterr().out
    version = tmp_path / "models" / "shop_enc" / "1"
    lineage = json.loads((version / "lineage.json").read_text())
    assert lineage["source_task"] == "events" and lineage["entity"] == "customer_id" and lineage["histories"] > 10
    losses = json.loads((version / "metrics.json").read_text())["contrastive_loss_per_epoch"]
    assert len(losses) == 4 and losses[-1] < losses[0]  # CoLES learns on the event encoder
    config = json.loads((version / pt.ENCODER_CONFIG).read_text())
    assert config["token_sizes"] == datamodule.encoder.token_sizes and config["max_len"] == MAX_LEN
    pretrained = torch.load(version / pt.ENCODER_STATE, weights_only=True)
    assert set(pretrained) == set(EventSequenceEncoder(**config).state_dict())  # the class task=events builds
    # What `train task=events task.sequence.init_from=...` builds: every arm with an encoder starts from it.
    fine_tune = ["task.sequence.init_from=shop_enc@1", "task.sequence.freeze=true", "logger=none"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*data, *fine_tune])
    pipeline = EventPipeline()
    built = {arm.name: arm.build()[0] for arm in pipeline.arms(cfg, datamodule, "binary")}
    assert set(built) == {"model", "aggregates_only", "sequence_only"}
    for name in ("model", "sequence_only"):
        state = built[name].sequence.state_dict()
        assert all(torch.equal(state[key], value) for key, value in pretrained.items()), name
        assert not any(p.requires_grad for p in built[name].sequence.parameters())  # frozen
    assert pipeline.pretrained_encoder == {
        "name": "shop_enc",
        "version": 1,
        "data_hash": lineage["data_hash"],
        "freeze": True,
    }
    scratch = EventPipeline().arms(_without_init(cfg), datamodule, "binary")[0].build()[0]
    assert not torch.equal(scratch.sequence.cls, pretrained["cls"])


def _without_init(cfg):
    out = cfg.copy()
    out.task.sequence.init_from = None
    return out


def test_the_few_label_study_keeps_n_training_entities_and_the_same_holdout(datamodule):
    sub = labelled_subset(datamodule, 10, seed=1)
    train = sub.frames["train"]
    assert train["entity"].nunique() == 10 and set(train["entity"]) <= set(datamodule.frames["train"]["entity"])
    assert len(sub._datasets["train"]) == len(train) == len(sub.sequences["train"]["age_days"])
    rows = datamodule.frames["train"]["entity"].isin(train["entity"]).to_numpy()
    np.testing.assert_array_equal(sub.sequences["train"]["age_days"], datamodule.sequences["train"]["age_days"][rows])
    for split in ("val", "test"):
        assert sub.frames[split] is datamodule.frames[split] and sub._datasets[split] is datamodule._datasets[split]
    assert len(datamodule.frames["train"]) > len(train)  # the original is untouched


def test_suffix_slices_are_the_newest_events_as_they_were(datamodule):
    arrays, _ = event_pretraining_arrays(datamodule, min_events=2)
    length = event_lengths(arrays)
    sliced = pt.random_slices(arrays, np.random.default_rng(0), 2, length, PADDING_AGE, suffix=True)
    size = event_lengths(sliced)
    assert (size <= length).all() and (size < length).any()
    real = np.arange(MAX_LEN)[None, :] >= (MAX_LEN - size)[:, None]
    for field, values in arrays.items():  # the newest `size` events, untouched (ages still before the as_of)
        np.testing.assert_array_equal(sliced[field][real], values[real])
    assert (sliced["age_days"][~real] == PADDING_AGE).all()
    with pytest.raises(pt.PretrainError, match="slices"):
        pt.PretrainConfig(encoder={}, slices="middle")
