"""Per-deal building blocks of `simulate_crm`, kept apart so the simulator module reads as the story.

The stage walk (every stage change of every deal), the quarter-end pull of closes, and the free-text MEDDPICC
fields a rep writes. Pure functions of their arrays: the simulator owns every random generator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS, OPEN_STAGES


def days_index(values: np.ndarray) -> pd.TimedeltaIndex:
    return pd.to_timedelta(values, unit="D")


def stage_walk(
    opp_ids: list[str], last_stage: np.ndarray, won: np.ndarray, enter_day: np.ndarray, close_day: np.ndarray
) -> pd.DataFrame:
    """Every stage change of every deal, deal by deal in order: creation (from nothing to the first stage),
    one row per later open stage entered, then the close. Vectorised (one row per change, no Python loop)."""
    changes = last_stage + 2  # creation, the stages walked after the first, the close
    deal = np.repeat(np.arange(len(opp_ids)), changes)
    step = np.arange(deal.size) - np.repeat(np.cumsum(changes) - changes, changes)
    is_close = step == last_stage[deal] + 1
    open_stages = np.asarray(OPEN_STAGES, dtype=object)
    final = np.where(won[deal], "closed_won", "closed_lost").astype(object)
    from_stage = np.where(step == 0, None, open_stages[np.maximum(step - 1, 0)])
    to_stage = np.where(is_close, final, open_stages[np.minimum(step, len(OPEN_STAGES) - 1)])
    day = np.where(is_close, close_day[deal], enter_day[deal, np.minimum(step, len(OPEN_STAGES) - 1)])
    return pd.DataFrame(
        {
            "opportunity_id": np.asarray(opp_ids, dtype=object)[deal],
            "from_stage": from_stage,
            "to_stage": to_stage,
            "day": day,
        }
    )


def quarter_end_push(close_day: np.ndarray, stage_start_day: np.ndarray, start_ts: pd.Timestamp) -> np.ndarray:
    """Closes landing in the first 10 days of a quarter are pulled back to the previous quarter's last day,
    unless that would be before the deal entered its final stage."""
    closes = pd.DatetimeIndex(start_ts.tz_localize(None) + days_index(close_day))
    quarter_start = closes.to_period("Q").start_time
    days_into_quarter = (closes - quarter_start).total_seconds().to_numpy() / 86400.0
    pushed = (quarter_start - pd.Timedelta(hours=6) - start_ts.tz_localize(None)).total_seconds().to_numpy() / 86400.0
    return np.where((days_into_quarter < 10) & (pushed > stage_start_day), pushed, close_day)


def meddpicc_text(
    rng: np.random.Generator, z: np.ndarray, first: np.ndarray, last: np.ndarray
) -> dict[str, list[str | None]]:
    """Free-text MEDDPICC fields as reps write them (filled more often on good deals; may hold PII).

    The contract keeps no history of these fields, so their final values would leak the future into
    past snapshots: the skeleton stores them but no feature reads them.
    """
    n = len(z)
    fill_p = 1.0 / (1.0 + np.exp(-(0.3 + 0.8 * z)))
    out: dict[str, list[str | None]] = {}
    filled_count = np.zeros(n)
    for field in MEDDPICC_FIELDS:
        filled = rng.uniform(size=n) < fill_p
        filled_count += filled
        if field == "champion":
            text = [f"{f} {s} is our champion" for f, s in zip(first, last, strict=False)]
        else:
            text = [f"{field.replace('_', ' ')} discussed" for _ in range(n)]
        out[field] = [t if f else None for t, f in zip(text, filled, strict=False)]
    out["meddpicc_score"] = list(np.round(100 * filled_count / len(MEDDPICC_FIELDS)).astype(int))
    return out
