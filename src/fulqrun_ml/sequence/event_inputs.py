"""The inputs a client sends to a published event model, built from raw event and query files.

A client holds raw events, not model inputs. `event_model_inputs` reads an events file and a query file
((entity, as_of) rows) with the rules and the column kinds the model was trained with (column_types.json of the
version), cuts each history at its as_of and builds the aggregates and sequence arrays with the version's own
`EventEncoder` (sequence_vocab.json): the very functions training used, so served inputs cannot drift from
trained ones. `serving/event_predict.py` sends them through the SDK to Triton (`fulqrun-ml predict --events`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.event_table import EventColumns, check_label_histories, load_events, load_queries
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.sequence.event_features import EventEncoder, EventIndex, audit_cut, cut_histories


@dataclass(frozen=True)
class EventModelInputs:
    queries: pd.DataFrame  # entity, as_of (the query file's order)
    records: pd.DataFrame  # the aggregate columns the graph takes
    sequences: dict[str, np.ndarray]  # [rows, max_len] per sequence field


def event_model_inputs(version_dir: str | Path, events_path: str | Path, queries_path: str | Path) -> EventModelInputs:
    """Model inputs for every query row (see the module docstring); bad files are errors naming file/column/row."""
    version_dir = Path(version_dir)
    missing = [
        f for f in ("column_types.json", "sequence_vocab.json", "feature_spec.json") if not (version_dir / f).is_file()
    ]
    if missing:
        raise FulqrunMLError(f"{version_dir} is not an event model version (missing {', '.join(missing)})")
    table = json.loads((version_dir / "column_types.json").read_text())
    encoder = EventEncoder.load(version_dir / "sequence_vocab.json")
    spec = FittedFeatureSpec.load(version_dir / "feature_spec.json")
    events = load_events(
        events_path,
        table["entity_col"],
        table["time_col"],
        sort_events=bool(table.get("sort_events", False)),
        allow_duplicate_times=bool(table.get("allow_duplicate_times", False)),
        columns=EventColumns.from_dict(table),
    )
    queries = load_queries(queries_path, table["entity_col"], table["as_of_col"])
    check_label_histories(events, queries, Path(str(queries_path)).name, table["as_of_col"])
    index = EventIndex(events.events)
    histories = cut_histories(index, queries.labels["entity"].to_numpy(), queries.labels["as_of"])
    audit_cut(index, histories, "queries")
    aggregates, sequences = encoder.transform(events.events, index, histories)
    return EventModelInputs(queries.labels[["entity", "as_of"]], aggregates[spec.spec.names], sequences)
