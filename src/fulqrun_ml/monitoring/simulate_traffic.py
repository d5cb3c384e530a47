"""The simulated production calendar and traffic of `fulqrun-ml monitor simulate`: which deals are scored when,
with what point-in-time features, and which outcomes are known at each evaluation.

Why traffic is spread over the working week (each deal open during the week is scored once, on a working day
drawn per deal and week) rather than one batch on a fixed weekday: a batch on the day after a holiday or a
quarter end is not like the reference, by construction. Measured on the no-drift control (seeds 0-2, 20,000
deals): a Tuesday batch flagged `stage` on the first day of every quarter (the quarter-end push empties the
late stages; chi-square p ~ 1e-8) and `days_since_last_activity` after every Monday holiday (p ~ 1e-50).
Requests spread over the week, as a CRM sends them, dilute both to the share of the week they cover.

The draw is a hash of (deal, week): stable and independent of every other deal, so a deal created before the
onset is scored on the same day in every scenario. Its features are the same except its touches: the
simulator draws every deal's touches from one random stream (data/simulator_touches.py), so a drift that
changes later deals re-draws everyone's touches (same distribution, another realisation). Hence each
scenario's reference comes from its own world: a reference from the control's touches against traffic with
re-drawn ones flagged activity counts in the week of a downturn's onset (seed 4), a drift no story caused.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.calendar import holidays_between
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.snapshots import open_deals_as_of
from fulqrun_ml.features.deal_features import compute_deal_features
from fulqrun_ml.serving.client import TritonPredictionClient

START = pd.Timestamp("2024-01-01", tz="UTC")  # simulate_crm's default start (a Monday)
SCORING_HOUR = pd.Timedelta(hours=12)  # requests arrive at midday of a working day
WEEK = pd.Timedelta(days=7)


@dataclass(frozen=True)
class SimCalendar:
    """Weeks of the replay. Week 1 starts at the training cut (a Monday, so weeks are the monitor's W-SUN
    windows); weeks <= 0 are the reference weeks before it. The drift starts with week `onset_week`."""

    train_days: int
    onset_week: int

    def __post_init__(self) -> None:
        if self.cut.dayofweek != 0:
            raise ValueError(f"train_days={self.train_days}: the training cut {self.cut.date()} must be a Monday")
        if self.onset_week < 1:
            raise ValueError(f"onset_week must be >= 1, got {self.onset_week}")

    @property
    def cut(self) -> pd.Timestamp:
        return START + pd.Timedelta(days=self.train_days)

    def week_start(self, week: int) -> pd.Timestamp:
        return self.cut + (week - 1) * WEEK

    def week_end(self, week: int) -> pd.Timestamp:
        """When the week's window has closed: the monitor evaluates it, with the outcomes known by then."""
        return self.week_start(week) + WEEK

    def window(self, week: int) -> tuple[str, str]:
        """(Monday, Sunday) dates: the W-SUN window the alert rules key on."""
        start = self.week_start(week)
        return str(start.date()), str((start + pd.Timedelta(days=6)).date())

    @property
    def onset(self) -> pd.Timestamp:
        return self.week_start(self.onset_week)

    @property
    def onset_day(self) -> int:
        """The onset in days after the simulation start (`DriftScenario.onset_day`)."""
        return int((self.onset - START) / pd.Timedelta(days=1))


def week_traffic(tables: CRMTables, calendar: SimCalendar, week: int, names: Sequence[str]) -> pd.DataFrame:
    """One request per deal open on some working day of `week`, on a day drawn by hash (module docstring), with
    the features the CRM holds at that moment: columns entity_id, predicted_at and the model's inputs."""
    start = calendar.week_start(week)
    holidays = holidays_between(start, start + WEEK)
    days = [start + pd.Timedelta(days=k) for k in range(7)]
    moments = [d + SCORING_HOUR for d in days if np.is_busday(np.datetime64(d.date()), holidays=holidays)]
    open_days = pd.concat(
        [open_deals_as_of(tables, m)[["opportunity_id"]].assign(as_of=m) for m in moments], ignore_index=True
    )
    tag = str(start.date())
    draw = np.array([zlib.crc32(f"{o}|{tag}".encode()) for o in open_days["opportunity_id"]], dtype=np.int64)
    slot = open_days.groupby("opportunity_id", sort=False).cumcount().to_numpy()
    count = open_days.groupby("opportunity_id", sort=False)["as_of"].transform("size").to_numpy()
    picked = open_days[slot == draw % count].reset_index(drop=True)
    features = compute_deal_features(tables, picked)
    return features.rename(columns={"opportunity_id": "entity_id", "as_of": "predicted_at"})[
        ["entity_id", "predicted_at", *names]
    ]


def reference_traffic(
    tables: CRMTables, calendar: SimCalendar, weeks: int, client: TritonPredictionClient, names: Sequence[str]
) -> pd.DataFrame:
    """The monitor's reference: the same kind of traffic over the `weeks` weeks before the training cut, scored
    by production. Built from the world being monitored (module docstring: a drift re-draws the touches)."""
    frames = [week_traffic(tables, calendar, week, names) for week in range(1 - weeks, 1)]
    reference = pd.concat(frames, ignore_index=True)
    reference["probability"] = score(client, reference, names)
    return reference


def outcomes_known_by(tables: CRMTables, known_by: pd.Timestamp) -> pd.DataFrame:
    """Closed deals by `known_by`: entity_id, closed_at, won (1/0), as `join_outcomes` takes them."""
    history = tables.stage_history
    closes = history[history["to_stage"].isin(["closed_won", "closed_lost"]) & (history["changed_at"] <= known_by)]
    return pd.DataFrame(
        {
            "entity_id": closes["opportunity_id"].to_numpy(),
            "closed_at": closes["changed_at"].to_numpy(),
            "won": (closes["to_stage"] == "closed_won").to_numpy(dtype=float),
        }
    ).drop_duplicates("entity_id", keep="last")


def score(client: TritonPredictionClient, frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """Probabilities from Triton for raw records (the client chunks to the server's max batch size)."""
    if frame.empty:
        return np.zeros(0)
    return client.predict(frame[list(names)]).astype(np.float64)
