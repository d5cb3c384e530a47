"""How low can WAPE go? An estimate of the irreducible error of booked-revenue series.

A period's bookings are a random number of won deals times random deal values (compound Poisson). Even a
forecaster that knew each series' rate exactly would miss by E|Y - median(Y)|; divided by E[Y] that is
a floor for WAPE. Comparing it with seasonal naive's WAPE tells whether a target like "35% below seasonal
naive" is reachable at all on given data, before blaming the model. Estimated by Monte Carlo with each
series' mean revenue per period over the test period and the CRM's empirical won-deal values (the rate's
own seasonal swings are ignored, so this is an approximation, reported as such).
"""

from __future__ import annotations

import numpy as np

from fulqrun_ml.data.contract import CRMTables


def won_deal_values(tables: CRMTables) -> np.ndarray:
    """Values of every deal that closed won."""
    won = tables.stage_history.loc[tables.stage_history["to_stage"] == "closed_won", "opportunity_id"]
    values = tables.opportunities.set_index("id")["value"].reindex(won).to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


def compound_poisson_wape_floor(
    mean_revenue: np.ndarray, deal_values: np.ndarray, draws: int = 4000, seed: int = 0
) -> float:
    """Pooled WAPE floor over series with the given mean revenue per period [G]."""
    if len(deal_values) == 0:  # a user's series table has no deals behind it: the floor is unknown, not zero
        return float("nan")
    rng = np.random.default_rng(seed)
    rates = np.asarray(mean_revenue, dtype=np.float64) / deal_values.mean()
    error, total = 0.0, 0.0
    for rate in rates:
        counts = rng.poisson(rate, draws)
        picks = rng.choice(deal_values, counts.sum())
        y = np.bincount(np.repeat(np.arange(draws), counts), weights=picks, minlength=draws)
        error += np.abs(y - np.median(y)).mean()
        total += y.mean()
    return float(error / total) if total > 0 else float("nan")
