"""Behavioural lead scoring (`task=lead_conversion_sequence`): each lead's touches and own `lead_events` as one
point-in-time sequence, trained through the sequence-fusion spine, exported with parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.sequence.datamodule import audit_sequences
from fulqrun_ml.sequence.events import build_sequences
from fulqrun_ml.sequence.export import export_sequence_run
from fulqrun_ml.sequence.lead_sequences import TYPE_CODE, lead_event_stream, lead_sequences
from fulqrun_ml.training.train import train

MAX_LEN = 12
LEAD_RUN = [
    "experiment=deal_win_sequence_fusion",
    "task=lead_conversion_sequence",
    "+data.source.lead_events=true",
    "data.source.n_opportunities=900",
    "data.snapshot_every_days=28",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "logger=none",
    f"task.sequence.max_len={MAX_LEN}",
    "model.net.d_model=16",
    "model.net.n_layers=1",
]


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=200, n_companies=60, n_reps=4, n_leads=300, days=300, seed=6, lead_events=True)


@pytest.fixture(scope="module")
def index(crm) -> pd.DataFrame:
    """Every lead at 20 days after its creation (inside most lives, so later events exist)."""
    leads = crm.tables.leads
    return pd.DataFrame({"lead_id": leads["id"], "as_of": leads["created_at"] + pd.Timedelta(days=20)})


def test_sequences_hold_exactly_the_events_up_to_as_of(crm, index):
    stream = lead_event_stream(crm.tables)
    raw = lead_sequences(crm.tables, index, max_len=1000)
    expected = [
        int(((stream["lead_id"] == lead) & (stream["time"] <= as_of)).sum())
        for lead, as_of in zip(index["lead_id"], index["as_of"], strict=True)
    ]
    assert raw["length"].tolist() == expected
    later = sum(int(((stream["lead_id"] == lead) & (stream["time"] > t)).sum()) for lead, t in index.values)
    assert later > 0  # the cut matters: there are events after as_of that must stay out
    assert audit_sequences({"test": raw}) == {"rows_audited": len(index), "violations": 0}


def test_both_streams_are_merged_in_time_order(crm, index):
    raw = build_sequences(crm.tables, index, MAX_LEN, entity="lead_id")
    real = np.arange(MAX_LEN)[None, :] >= (MAX_LEN - raw["length"])[:, None]
    codes = raw["event_type"][real]
    assert (codes > len(TYPE_CODE) - 5).any() and (codes <= len(TYPE_CODE) - 5).any()  # lead events and touches
    ages = np.where(real, raw["age_days"], 1e9)
    assert (np.diff(ages, axis=1)[real[:, 1:] & real[:, :-1]] <= 1e-4).all()  # newest last
    assert (raw["age_days"][real] >= 0).all()


@pytest.fixture(scope="module")
def lead_run(tmp_path_factory, compose_train) -> dict:
    root = tmp_path_factory.mktemp("lead_sequence")
    return train(compose_train(root / "run", *LEAD_RUN, f"paths.root_dir={root}"))


def test_lead_run_trains_both_arms_and_exports_with_parity(lead_run, tmp_path):
    run_dir = Path(lead_run["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"model", "tabular_only", "oracle", "sequence_gain"} <= set(metrics)
    assert json.loads((run_dir / "sequence_vocab.json").read_text())["known"]["event_type"][-1] >= 6  # lead events
    assert (run_dir / "open_deals_sequences.npz").is_file()  # today's undecided leads, ready to score
    version, parity = export_sequence_run(run_dir, tmp_path, "lead_conversion_sequence")
    assert (version.path / "model.onnx").is_file() and (version.path / "sequence_vocab.json").is_file()
    assert parity < 1e-4
    stored = get_version(tmp_path, "lead_conversion_sequence")
    inputs = {i["name"] for i in stored.metadata["inputs"]}
    assert {"event_type", "channel", "direction", "delta_days", "age_days", "lead_age_days"} <= inputs


def test_counts_baseline_counts_the_same_events_as_the_sequences(crm, index):
    """The counts-only baseline of the benchmark reads exactly the events the sequences hold (<= as_of)."""
    from fulqrun_ml.benchmarks.sequence_leads import type_counts

    counts = type_counts(crm.tables, index)
    assert counts.sum(axis=1).astype(int).tolist() == lead_sequences(crm.tables, index, 1000)["length"].tolist()
