"""The append source: event files tailed in order, a checkpoint that survives a restart, dead letters kept."""

from __future__ import annotations

import json
import uuid

import pandas as pd

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.online.append_source import CHECKPOINT, DEAD_LETTERS, AppendSource


def test_append_source_checkpoints_and_replays_nothing_twice(tmp_path):
    tables = simulate_crm(n_opportunities=30, n_companies=8, n_reps=3, seed=4).tables
    write_crm_directory(tables, tmp_path / "base")
    activity = tables.activities.iloc[0]
    new_id = str(uuid.uuid4())
    row = {c: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for c, v in activity.items()} | {"id": new_id}
    row = {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in row.items()}
    events = pd.DataFrame(
        {
            "seq": [1, 2],
            "table": ["activities", "deals"],
            "op": ["INSERT", "INSERT"],
            "row": [json.dumps(row, default=str), "{}"],
            "committed_at": ["2026-01-01T00:00:00+00:00"] * 2,
        }
    )
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    events.to_csv(events_dir / "0001.csv", index=False)

    source = AppendSource(events_dir, tmp_path / "base")
    base, reflected = source.load()
    assert reflected == set() and new_id not in set(base.activities["id"])
    batch = source.read(10)
    assert [e.seq for e in batch.events] == [1] and [d.seq for d in batch.malformed] == [2]
    assert "field 'table_name'" in batch.malformed[0].error
    source.ack(batch.seqs, batch.malformed)
    assert json.loads((events_dir / CHECKPOINT).read_text())["done"] == {"0001.csv": 2}
    assert "'deals'" in (events_dir / DEAD_LETTERS).read_text()

    restarted = AppendSource(events_dir, tmp_path / "base")
    tables_after, _ = restarted.load()
    assert (tables_after.activities["id"] == new_id).sum() == 1  # acknowledged events rebuilt into the mirror
    assert len(restarted.read(10)) == 0 and restarted.watermark() == 2
    events.iloc[:1].assign(seq=3).to_csv(events_dir / "0002.csv", index=False)  # a new file is picked up
    assert [e.seq for e in restarted.read(10).events] == [3]
