"""Sequence data: point-in-time extraction, vocabularies fitted on train, alignment with the deal-win frame."""

import dataclasses
import functools

import numpy as np
import pandas as pd
import pytest
import torch

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.snapshots import deal_win_snapshots, snapshot_dates
from fulqrun_ml.datamodules.tabular import SPLITS, DealWinDataModule
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.sequence.datamodule import DealWinSequenceDataModule, LengthBucketBatchSampler, audit_sequences
from fulqrun_ml.sequence.events import PADDING, UNKNOWN, SequenceDataError, SequenceVocabulary, build_sequences

MAX_LEN = 16
SOURCE = functools.partial(simulate_crm, n_opportunities=400, n_companies=100, n_reps=6, days=480, seed=11)


@pytest.fixture(scope="module")
def index(tiny_crm):
    dates = snapshot_dates(tiny_crm.tables, every_days=28, warmup_days=60, horizon_days=180)
    snaps = deal_win_snapshots(tiny_crm.tables, dates, 180)
    return snaps.sample(300, random_state=0).reset_index(drop=True)


def _rewrite_future(tables, index):
    """Every activity after its deal's latest as_of in `index` is changed: retyped, moved, and one added."""
    acts = tables.activities.copy()
    latest = index.groupby("opportunity_id")["as_of"].max()
    cutoff = acts["related_id"].map(latest)
    future = cutoff.notna() & (acts["created_at"] > cutoff)
    assert future.sum() > 50  # the test must actually alter something
    acts.loc[future, "type"] = "meeting"
    acts.loc[future, "created_at"] = acts.loc[future, "created_at"] + pd.Timedelta(hours=7)
    extra = acts[future].head(40).copy()
    extra["id"] = [f"extra-{i}" for i in range(len(extra))]
    extra["created_at"] = cutoff[future].head(40).to_numpy() + pd.Timedelta(seconds=1)
    return dataclasses.replace(tables, activities=pd.concat([acts, extra], ignore_index=True))


def test_sequences_ignore_everything_after_as_of(tiny_crm, index):
    before = build_sequences(tiny_crm.tables, index, MAX_LEN)
    after = build_sequences(_rewrite_future(tiny_crm.tables, index), index, MAX_LEN)
    assert before["length"].sum() > 500
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values, err_msg=name)
    # ... while a touch at or before as_of does show up.
    acts = tiny_crm.tables.activities
    row = index.iloc[int(np.argmax(before["length"] < MAX_LEN))]
    added = acts.iloc[[0]].assign(related_id=row["opportunity_id"], created_at=row["as_of"], type="note")
    changed = dataclasses.replace(tiny_crm.tables, activities=pd.concat([acts, added], ignore_index=True))
    one = build_sequences(changed, index.iloc[[int(np.argmax(before["length"] < MAX_LEN))]], MAX_LEN)
    assert one["length"][0] == before["length"][before["length"] < MAX_LEN][0] + 1


def test_vocabulary_indexes_train_values_and_sends_the_rest_to_unknown():
    train = {
        "event_type": np.array([[0, 3, 1], [2, 2, 1]]),
        "channel": np.array([[0, 1, 1], [1, 2, 2]]),
        "direction": np.array([["", "inbound", "outbound"], ["outbound", "inbound", "inbound"]], dtype=object),
        "delta_days": np.ones((2, 3), np.float32),
        "age_days": np.ones((2, 3), np.float32),
        "length": np.array([2, 3]),
    }
    vocab = SequenceVocabulary.fit(train, max_len=3)
    assert vocab.sizes == {"n_event_types": 5, "n_channels": 4, "n_directions": 4}
    later = {
        **train,
        # 0 in a real column (an activity type the extraction did not recognise) is an event, not padding.
        "event_type": np.array([[9, 0, 3], [0, 2, 7]]),
        "direction": np.array([["x", "inbound", "sideways"], ["", "inbound", "outbound"]], dtype=object),
        "length": np.array([1, 3]),
    }
    out = vocab.transform(later)
    known = {c: i + 2 for i, c in enumerate(vocab.known["event_type"])}
    np.testing.assert_array_equal(out["event_type"], [[PADDING, PADDING, known[3]], [UNKNOWN, known[2], UNKNOWN]])
    assert out["direction"][0].tolist() == [PADDING, PADDING, UNKNOWN]
    assert out["direction"][1, 0] == UNKNOWN and out["direction"][1, 1] != out["direction"][1, 2]
    assert (out["delta_days"][0, :2] == 0).all()


def test_vocabulary_round_trips_and_rejects_bad_arrays(tmp_path):
    train = {
        "event_type": np.array([[0, 3]]),
        "channel": np.array([[0, 1]]),
        "delta_days": np.zeros((1, 2), np.float32),
        "age_days": np.zeros((1, 2), np.float32),
        "length": np.array([1]),
    }
    vocab = SequenceVocabulary.fit(train, max_len=2)
    vocab.save(tmp_path / "v.json")
    assert SequenceVocabulary.load(tmp_path / "v.json") == vocab
    with pytest.raises(SequenceDataError, match="age_days"):
        vocab.transform({**train, "age_days": np.array([[0.0, np.nan]], np.float32)})
    with pytest.raises(SequenceDataError, match="event_type"):
        vocab.transform({**train, "event_type": np.array([[0, 3, 3]])})
    with pytest.raises(SequenceDataError, match="channel"):
        vocab.transform({k: v for k, v in train.items() if k != "channel"})


@pytest.fixture(scope="module")
def datamodules():
    sequence = DealWinSequenceDataModule(SOURCE, max_len=MAX_LEN, batch_size=64, snapshot_every_days=28)
    sequence.setup("fit")
    tabular = DealWinDataModule(SOURCE, batch_size=64, snapshot_every_days=28)
    tabular.setup("fit")
    return sequence, tabular


def test_datamodule_keeps_the_deal_win_rows_and_aligns_a_sequence_to_each(datamodules):
    sequence, tabular = datamodules
    assert sequence.data_hash == tabular.data_hash and sequence.spec.cardinalities == tabular.spec.cardinalities
    tables = SOURCE().tables
    for split in SPLITS:
        frame = sequence.frames[split]
        pd.testing.assert_frame_equal(frame, tabular.frames[split])
        expected = sequence.vocabulary.transform(build_sequences(tables, frame, MAX_LEN))
        for name, values in expected.items():
            np.testing.assert_array_equal(sequence.sequences[split][name], values)
    rows = [0, 3, 5]
    batch = sequence._datasets["val"][rows]
    first = sequence.sequences["val"]
    assert set(batch) == {"continuous", "categorical", "target", *first}
    np.testing.assert_array_equal(batch["event_type"].numpy(), first["event_type"][rows])
    encoded = tabular.spec.encode(tabular.frames["val"])
    np.testing.assert_array_equal(batch["continuous"].numpy(), encoded["continuous"][rows])
    seen = np.concatenate([b["target"].numpy() for b in sequence.val_dataloader()])
    assert len(seen) == len(sequence.frames["val"])
    assert len(sequence.open_deal_sequences["event_type"]) == len(sequence.open_deals)


def test_vocabulary_is_fitted_on_the_training_split_only(datamodules):
    sequence, _ = datamodules
    tables = SOURCE().tables
    train_only = SequenceVocabulary.fit(build_sequences(tables, sequence.frames["train"], MAX_LEN), MAX_LEN)
    assert sequence.vocabulary == train_only


def test_length_buckets_cover_every_row_once_and_keep_similar_lengths_together():
    lengths = np.random.default_rng(0).integers(0, 30, size=1000)
    torch.manual_seed(0)
    sampler = LengthBucketBatchSampler(lengths, batch_size=32, shuffle=True, bucket_batches=8)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 6  # random batches of 32 would span ~28
    torch.manual_seed(1)
    assert list(sampler) != batches  # reshuffled each epoch
    ordered = list(LengthBucketBatchSampler(lengths, batch_size=32, shuffle=False, bucket_batches=8))
    assert ordered == list(LengthBucketBatchSampler(lengths, batch_size=32, shuffle=False, bucket_batches=8))


def test_sequence_audit_stops_a_build_that_saw_the_future(datamodules):
    sequence, _ = datamodules
    assert sequence.leakage_audit["activity_sequences"]["violations"] == 0
    raw = {"length": np.array([2]), "age_days": np.array([[0.0, 3.0, -0.5]], np.float32)}
    with pytest.raises(LeakageError, match="activity_sequences"):
        audit_sequences({"train": raw})
