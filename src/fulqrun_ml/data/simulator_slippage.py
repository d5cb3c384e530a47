"""The simulator's `opportunity_history`: how reps revise a deal's expected close date and amount over its life.

Why: slippage (close dates pushed again and again, amounts cut) is the classic sign of an unhealthy pipeline,
and it is only measurable point-in-time from versions of those fields, which the CRM row overwrites. The story:

1. At creation the rep sets an expected close date: the creation day plus the typical cycle for the deal's
   size, times an optimism factor `optimism` (reps expect deals sooner than they close) and log-normal noise.
2. Whenever that date passes while the deal is still open, the rep notices after an exponential lag (mean
   `notice_mean_days`: the next pipeline review, not the same day) and pushes it to that day plus a
   gamma-distributed number of days (mean `push_mean_days`); each push is a version dated the day the rep
   noticed. Until then the deal sits open past its expected close date: a slipped deal, as in a real CRM
   (with `notice_mean_days=0` the rep pushes the day the date passes and no open deal is ever overdue).
3. At the close the date becomes the actual close date (a version dated that day).
4. Amounts (only with `amount_noise_sd > 0`): the first amount is the true one times log-normal noise and is
   corrected to the true amount when the deal enters proposal (or closes, whichever is first). Off by default,
   because the deal-win features read the row's amount as a fixed field: with revisions on, that read would
   carry the later correction into earlier snapshots.

Everything draws from its own generator, so the other tables are exactly what they were without it. Open deals
carry their latest expected close date in the `opportunities` row, so row and history agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SlippageStory:
    """The rep's revision habits (see the module docstring)."""

    optimism: float = 0.85
    estimate_sd: float = 0.25
    push_mean_days: float = 21.0
    amount_noise_sd: float = 0.0
    notice_mean_days: float = 7.0


def simulate_opportunity_history(
    rng: np.random.Generator,
    opp_ids: list[str],
    created_day: np.ndarray,
    typical_cycle_days: np.ndarray,
    close_day: np.ndarray,
    proposal_day: np.ndarray,
    value: np.ndarray,
    horizon_days: float,
    start: pd.Timestamp,
    story: SlippageStory = SlippageStory(),
) -> tuple[pd.DataFrame, np.ndarray]:
    """(opportunity_history rows, each deal's expected close day at the horizon; NaN for deals closed by then).

    `close_day` is the actual close (may lie beyond the horizon for deals still open), `proposal_day` the day the
    deal entered proposal (NaN when it never did)."""
    n = len(opp_ids)
    first_close = created_day + typical_cycle_days * story.optimism * rng.lognormal(0.0, story.estimate_sd, size=n)
    first_close = np.maximum(first_close, created_day + 1.0)
    noisy_value = value * rng.lognormal(0.0, story.amount_noise_sd, size=n) if story.amount_noise_sd > 0 else value
    fix_day = np.fmin(proposal_day, close_day)
    noisy_value = np.where(fix_day <= horizon_days, noisy_value, value)  # not yet corrected: the row shows it
    rows: list[tuple[int, float, float]] = []  # deal, expected close day, valid_from day
    expected_now = np.full(n, np.nan)
    # The lags draw from a child stream: with notice_mean_days=0 the rows are the earlier story's, draw for draw.
    lags = rng.spawn(1)[0] if story.notice_mean_days > 0 else None
    for i in range(n):
        end = min(close_day[i], horizon_days)
        rows.append((i, first_close[i], created_day[i]))
        expected = first_close[i]
        while expected <= end and expected < close_day[i]:
            noticed = expected + (lags.exponential(story.notice_mean_days) if lags is not None else 0.0)
            if noticed > end or noticed >= close_day[i]:  # closed or extracted before the rep noticed
                break
            expected = noticed + max(1.0, rng.gamma(2.0, story.push_mean_days / 2.0))
            rows.append((i, expected, noticed))
        if close_day[i] <= horizon_days:
            rows.append((i, close_day[i], close_day[i]))
        else:
            expected_now[i] = expected
    revised = np.flatnonzero((noisy_value != value) & (fix_day <= horizon_days) & (fix_day > created_day))
    rows += [(int(i), np.nan, fix_day[i]) for i in revised]
    frame = pd.DataFrame(rows, columns=["deal", "close_day", "valid_day"]).sort_values(["deal", "valid_day"])
    frame["close_day"] = frame.groupby("deal")["close_day"].ffill()
    deal = frame["deal"].to_numpy()
    frame["value"] = np.where(frame["valid_day"].to_numpy() >= fix_day[deal], value[deal], noisy_value[deal])
    history = pd.DataFrame(
        {
            "opportunity_id": np.asarray(opp_ids, dtype=object)[frame["deal"].to_numpy()],
            "value": frame["value"].to_numpy(dtype=float),
            "close_date": start + pd.to_timedelta(frame["close_day"].to_numpy(), unit="D"),
            "valid_from": start + pd.to_timedelta(frame["valid_day"].to_numpy(), unit="D"),
        }
    )
    history = history.drop_duplicates(["opportunity_id", "valid_from"], keep="last").reset_index(drop=True)
    history["close_date"] = history["close_date"].astype("datetime64[us, UTC]")
    history["valid_from"] = history["valid_from"].astype("datetime64[us, UTC]")
    return history, expected_now
