"""A synthetic user event table with a known temporal signal: customers' purchases, and churn.

Why this fixture: `data=events` must be shown on a table that is *not* the CRM, where the signal lives in the
shape of the history over time, as it does in real churn. The story (documented in docs/simulator.md, section
"Event-table fixture"):

- each customer signs up on a random day and buys as a Poisson process with their own base rate (lognormal, so
  a low count means "a light buyer" as often as "leaving"), in a category mix of their own, through a channel
  (web / app / store), with an amount and an item count;
- a customer churns on a latent day; in the `decline_days` before it (45-120 days, per customer) the purchase
  rate falls linearly to zero, the mix drifts toward the `sale` category and baskets shrink. After churn there
  are no purchases;
- every order has a `delivered_at` timestamp 1-7 days after it, which is in the future of an as_of that falls
  inside that gap: a point-in-time reader must not see it;
- labels: on every 30th day after a warm-up, each customer still active (not churned, with at least one
  purchase so far) gets `churned` = churns within the next `horizon_days`, and `spend_next` = what they spend in
  that window (a regression target).

So declining purchase frequency precedes churn, and counts alone (without their trend) are not sufficient.
The truth (`churn_day`, `decline_start`) is returned for the benchmark and never written to the label file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ("grocery", "electronics", "apparel", "home", "sale")
CHANNELS = ("web", "app", "store")
START = pd.Timestamp("2024-01-01", tz="UTC")


@dataclass(frozen=True)
class EventFixture:
    events: pd.DataFrame  # customer_id, ts, category, channel, amount, items, delivered_at
    labels: pd.DataFrame  # customer_id, as_of, churned, spend_next
    truth: pd.DataFrame  # customer_id, signup_day, churn_day, decline_start (days since START)


def simulate_purchases(
    n_customers: int = 1500,
    seed: int = 0,
    days: int = 480,
    horizon_days: int = 60,
    warmup_days: int = 150,
    label_every_days: int = 30,
    mean_lifetime_days: float = 320.0,
) -> EventFixture:
    """Purchases and churn labels for `n_customers` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:05d}" for i in range(n_customers)])
    signup = rng.uniform(0, warmup_days, n_customers)
    rate = np.exp(rng.normal(np.log(1 / 10), 0.6, n_customers))  # purchases per day
    churn = signup + rng.exponential(mean_lifetime_days, n_customers)
    decline = rng.uniform(45, 120, n_customers)
    decline_start = churn - decline
    mix = rng.dirichlet(np.full(len(CATEGORIES) - 1, 0.8), n_customers)
    channel_mix = rng.dirichlet(np.ones(len(CHANNELS)), n_customers)
    basket = np.exp(rng.normal(3.5, 0.5, n_customers))

    rows = []
    for i in range(n_customers):
        end = min(churn[i], days)
        n = rng.poisson(rate[i] * max(end - signup[i], 0.0))
        t = np.sort(rng.uniform(signup[i], end, n))
        # Thinning: the rate falls linearly to 0 over the decline window before churn.
        fading = np.clip((churn[i] - t) / decline[i], 0.0, 1.0)
        t = t[rng.uniform(size=n) < fading]
        fading = np.clip((churn[i] - t) / decline[i], 0.0, 1.0)
        drift = 1.0 - fading  # 0 before the decline, 1 at churn
        sale = rng.uniform(size=len(t)) < 0.05 + 0.6 * drift
        regular = rng.choice(len(CATEGORIES) - 1, size=len(t), p=mix[i])
        category = np.where(sale, len(CATEGORIES) - 1, regular)
        amount = basket[i] * np.exp(rng.normal(0, 0.4, len(t))) * (1.0 - 0.5 * drift)
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": ids[i],
                    "day": t,
                    "category": np.array(CATEGORIES)[category],
                    "channel": np.array(CHANNELS)[rng.choice(len(CHANNELS), size=len(t), p=channel_mix[i])],
                    "amount": np.round(amount, 2),
                    "items": 1 + rng.poisson(1.0 + 0.02 * amount),
                    "delivery_days": rng.uniform(1, 7, len(t)),
                }
            )
        )
    purchases = pd.concat(rows, ignore_index=True)
    # Whole seconds, so timestamps survive CSV; distinct per customer (a tie would be a duplicate-time error).
    seconds = np.round(purchases["day"].to_numpy() * 86400).astype(np.int64)
    purchases["ts"] = START + pd.to_timedelta(seconds, unit="s")
    purchases = purchases.drop_duplicates(["customer_id", "ts"]).sort_values(["customer_id", "ts"])
    purchases["delivered_at"] = (purchases["ts"] + pd.to_timedelta(purchases["delivery_days"], unit="D")).dt.floor("s")
    events = purchases[["customer_id", "ts", "category", "channel", "amount", "items", "delivered_at"]]
    labels = _labels(purchases, ids, churn, days, horizon_days, warmup_days, label_every_days)
    truth = pd.DataFrame({"customer_id": ids, "signup_day": signup, "churn_day": churn, "decline_start": decline_start})
    return EventFixture(events.reset_index(drop=True), labels, truth)


def _labels(
    purchases: pd.DataFrame,
    ids: np.ndarray,
    churn: np.ndarray,
    days: int,
    horizon_days: int,
    warmup_days: int,
    every: int,
) -> pd.DataFrame:
    """One label per active customer and as_of: churn within the horizon, and spend in it."""
    first = purchases.groupby("customer_id")["day"].min()
    churn_of = pd.Series(churn, index=ids)
    frames = []
    for as_of in range(warmup_days, days - horizon_days + 1, every):
        active = first.index[(first.to_numpy() <= as_of)]
        active = active[churn_of[active].to_numpy() > as_of]
        window = purchases[(purchases["day"] > as_of) & (purchases["day"] <= as_of + horizon_days)]
        spend = window.groupby("customer_id")["amount"].sum()
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": active,
                    "as_of": START + pd.Timedelta(days=as_of),
                    "churned": (churn_of[active].to_numpy() <= as_of + horizon_days).astype(int),
                    "spend_next": spend.reindex(active, fill_value=0.0).round(2).to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_event_fixture(directory: str | Path, n_customers: int = 1500, seed: int = 0) -> tuple[Path, Path]:
    """events.csv and labels.csv of `simulate_purchases` under `directory`: the files `data=events` reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fixture = simulate_purchases(n_customers, seed)
    events, labels = directory / "events.csv", directory / "labels.csv"
    fixture.events.to_csv(events, index=False)
    fixture.labels.to_csv(labels, index=False)
    return events, labels
