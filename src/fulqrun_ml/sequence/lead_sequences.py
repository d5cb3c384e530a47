"""Each lead's behaviour as one sequence: the rep's touches on the lead (`activities`, related_type "lead") and what
the lead did itself (`lead_events`: site visits, downloads, email opens and replies, form fills), newest last.

Why one merged stream: intent shows in how the lead's own actions answer the rep's (a reply after an email, a form
fill after a call), so the encoder must see both in time order. Point-in-time by construction: only events at or
before each row's as_of are read. The arrays have the same fields and codes as `activity_sequences` (so the
vocabulary, the model and the export are the deal-win ones); lead event types take the codes after the activity
types, the web channel the code after the activity channels, and a lead's own action is inbound.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.task_snapshots import CHANNEL_OF, CHANNELS, padded_sequences
from fulqrun_ml.data.vocabulary import ACTIVITY_DIRECTIONS, ACTIVITY_TYPES, LEAD_EVENT_TYPES, UNKNOWN_DIRECTION

TYPE_CODE = {t: i + 1 for i, t in enumerate((*ACTIVITY_TYPES, *LEAD_EVENT_TYPES))}
LEAD_CHANNELS = (*CHANNELS, "web")
CHANNEL_CODE = {c: i + 1 for i, c in enumerate(LEAD_CHANNELS)}
LEAD_EVENT_CHANNEL = {"email_open": "email", "email_reply": "email"}  # the rest happen on the web
DIRECTION_CODE = {d: i + 1 for i, d in enumerate(ACTIVITY_DIRECTIONS)}


def lead_event_stream(tables: CRMTables) -> pd.DataFrame:
    """(lead_id, type, channel, direction codes, time) of every touch and lead event, sorted by time."""
    acts = tables.activities[tables.activities["related_type"] == "lead"]
    direction = acts["direction"] if "direction" in acts.columns else pd.Series(UNKNOWN_DIRECTION, index=acts.index)
    touches = pd.DataFrame(
        {
            "lead_id": acts["related_id"].to_numpy(),
            "type": acts["type"].map(TYPE_CODE).fillna(0).astype(np.int64).to_numpy(),
            "channel": acts["type"].map(lambda t: CHANNEL_CODE[CHANNEL_OF.get(t, "internal")]).to_numpy(np.int64),
            "direction": direction.fillna(UNKNOWN_DIRECTION).map(DIRECTION_CODE).fillna(3).to_numpy(np.int64),
            "time": acts["created_at"].to_numpy(),
        }
    )
    events = tables.lead_events
    own = pd.DataFrame(
        {
            "lead_id": events["lead_id"].to_numpy(),
            "type": events["type"].map(TYPE_CODE).fillna(0).astype(np.int64).to_numpy(),
            "channel": events["type"].map(lambda t: CHANNEL_CODE[LEAD_EVENT_CHANNEL.get(t, "web")]).to_numpy(np.int64),
            "direction": np.full(len(events), DIRECTION_CODE["inbound"], dtype=np.int64),
            "time": pd.to_datetime(events["occurred_at"], utc=True).to_numpy(),
        }
    )
    frames = [f for f in (touches, own) if len(f)]
    stream = pd.concat(frames, ignore_index=True) if frames else touches
    stream["time"] = pd.to_datetime(stream["time"], utc=True)
    return stream.sort_values("time", kind="stable").reset_index(drop=True)


def lead_sequences(tables: CRMTables, index: pd.DataFrame, max_len: int) -> dict[str, np.ndarray]:
    """The last `max_len` touches and lead events of each (lead_id, as_of) row at or before as_of, left-padded:
    `event_type`, `channel`, `direction` (int, 0 = padding), `delta_days`, `age_days` [N, max_len], `length` [N]."""
    stream = lead_event_stream(tables).rename(columns={"lead_id": "entity"})
    return padded_sequences(stream, index["lead_id"], index["as_of"], max_len)
