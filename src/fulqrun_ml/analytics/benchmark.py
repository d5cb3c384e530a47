"""`fulqrun-ml analytics benchmark`: per-segment win rates pooled over organisations, released with epsilon-DP.

Why DP: a peer benchmark shows one organisation numbers computed from the other organisations' deals. With a
handful of peers, or a small segment, an exact count lets a reader infer a single competitor's deal (one more won
deal in "healthcare, DE" since last month). Each segment's decided-deal and win counts get Laplace noise of scale
2/epsilon (`privacy/dp_analytics.py`: one deal moves one segment's count and win count by at most 1, so L1
sensitivity 2; segments are disjoint, so epsilon covers the whole table). Rates are post-processing of the noisy
counts and cost nothing more. No minimum-count rule is needed: DP already covers small cells, and a threshold
applied to exact counts would itself leak. `dp.epsilon: null` releases exact counts, and the report says so.

What is public and what is not:
- The segment list must not come from the data (which segments exist is itself a fact about the deals). The
  contract's vocabulary (`data/vocabulary.py`) has no list for industry, country, rep region or competitor (they
  are each CRM's own picklists), so the config must give it (`segments.<column>`). Deals whose value is not on
  the list are pooled in one more public segment, `other`, so every deal is counted and nothing is dropped
  silently (an exact "dropped" count would leak).
- The number of organisations pooled is counted from the `organizations` table, not from the deals, so it
  does not depend on any one deal.
- With `--org ORG`, the caller's own exact rates (their data needs no privacy from themselves) sit next to the
  DP peer rates, and the peer pool excludes the caller: the peers are the other organisations.

The seed must be secret. The Laplace noise is a deterministic function of the seed: anyone who knows it
regenerates the noise vector and subtracts it from the release, which recovers the exact counts and voids the
guarantee. A fixed seed in a committed or shared config is therefore public and must not be used for a real
release. `dp.seed: null` (default) draws fresh OS entropy. The report never holds the seed: a shared report with
its seed inside would be an exact release.

Composition: every run spends epsilon again on each deal in its pool. Averaging k releases cancels the noise
(k releases cost k * epsilon), so release once per period and share that release.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.analytics.market import decided_deals, win_rates
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.privacy.dp_analytics import L1_SENSITIVITY, dp_segment_win_rates

# The columns `decided_deals` reads as of each deal's close (competitor has no history in the contract).
SEGMENT_COLUMNS: tuple[str, ...] = ("industry", "country", "rep_region", "competitor")
OTHER = "other"
NO_PRIVACY = "none (exact counts)"


def dp_epsilon(cfg: dict[str, Any]) -> float | None:
    """`dp.epsilon`: a positive finite number, or an explicit null for exact counts (no privacy)."""
    dp = cfg.get("dp") or {}
    if "epsilon" not in dp:
        raise FulqrunMLError("dp.epsilon: missing; give a positive number, or null for exact counts (no privacy)")
    value = dp["epsilon"]
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise FulqrunMLError(f"dp.epsilon: must be a positive finite number or null (no privacy), got {value!r}")
    return float(value)


def dp_seed(cfg: dict[str, Any]) -> int | None:
    """`dp.seed`: a non-negative integer (secret, see the module docstring) or null for fresh entropy."""
    value = (cfg.get("dp") or {}).get("seed")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise FulqrunMLError(f"dp.seed: must be a non-negative integer or null (fresh entropy), got {value!r}")
    return value


def segment_spec(cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """(segment column, its public segment list with `other` last): from `segment` and `segments.<column>`."""
    column = cfg.get("segment")
    if column not in SEGMENT_COLUMNS:
        raise FulqrunMLError(f"segment: unknown segment column {column!r}; one of {list(SEGMENT_COLUMNS)}")
    listed = (cfg.get("segments") or {}).get(column)
    if not listed or not isinstance(listed, list) or not all(isinstance(s, str) and s for s in listed):
        raise FulqrunMLError(
            f"segments.{column}: give the public list of {column} values in the config (not taken from the data, "
            f"which would leak which segments exist), got {listed!r}"
        )
    if len(set(listed)) != len(listed):
        raise FulqrunMLError(f"segments.{column}: values repeat in {listed}")
    return column, [*listed, *([] if OTHER in listed else [OTHER])]


def check_benchmark_config(cfg: dict[str, Any]) -> None:
    """Every config field the benchmark reads, checked without the CRM (a typo fails before a long read)."""
    dp_epsilon(cfg)
    dp_seed(cfg)
    segment_spec(cfg)


def benchmark_command(
    tables: CRMTables, cfg: dict[str, Any], as_of: pd.Timestamp | None = None, org: str | None = None
) -> dict[str, Any]:
    """The benchmark report for `fulqrun-ml analytics benchmark` (see the module docstring)."""
    epsilon, seed = dp_epsilon(cfg), dp_seed(cfg)
    column, segments = segment_spec(cfg)
    orgs = tables.organizations["id"].astype(str)
    if org is not None and org not in set(orgs):
        raise FulqrunMLError(f"--org: no organisation {org!r} in the CRM")
    peers = int((orgs != org).sum()) if org is not None else len(orgs)
    if peers == 0:
        raise FulqrunMLError(f"--org: no organisation other than {org!r} in the CRM to compare with")
    deals = decided_with_org(tables, as_of)
    report = peer_benchmark(deals, column, segments, epsilon, seed, org)
    stamp = pd.Timestamp(tables.extracted_at if as_of is None else as_of)
    return {"as_of": str(stamp), "organisations_pooled": peers, **report}


def decided_with_org(tables: CRMTables, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """`decided_deals` (closed at or before as_of, attributes as of close) plus each deal's organization_id."""
    deals = decided_deals(tables, as_of)
    owner = tables.opportunities.drop_duplicates("id").set_index("id")["organization_id"]
    return deals.assign(organization_id=owner.reindex(deals["id"]).astype(str).to_numpy())


def peer_benchmark(
    deals: pd.DataFrame,
    column: str,
    segments: Sequence[str],
    epsilon: float | None,
    seed: int | None,
    org: str | None = None,
) -> dict[str, Any]:
    """Peer rates per public segment (DP unless epsilon is None), and the caller's exact rates when `org` is set.

    `deals` needs `won`, `value`, `organization_id` and `column`; values off the list count as `other`.
    """
    keyed = deals.assign(segment=deals[column].astype(str).where(deals[column].astype(str).isin(segments), OTHER))
    pool = keyed if org is None else keyed[keyed["organization_id"] != org]
    rows = _peer_rates(pool, list(segments), epsilon, seed)
    if org is not None:
        own = keyed[keyed["organization_id"] == org]
        rows = rows.join(_own_rates(own, list(segments)))
        rows["gap"] = rows["own_win_rate"] - rows["peer_win_rate"]
    report: dict[str, Any] = {
        "segment": column,
        "peers": (
            "every organisation in the CRM"
            if org is None
            else f"every organisation except {org!r} (the caller's own deals are not in the peer pool)"
        ),
        "privacy": NO_PRIVACY if epsilon is None else "epsilon-DP (Laplace mechanism on per-segment counts)",
        "dp": None if epsilon is None else _dp_record(epsilon),
        "segments": [_plain(row) for row in rows.reset_index().to_dict("records")],
    }
    if org is not None:
        report["organization"] = org
    if epsilon is not None:
        report["dp"]["noise_seed"] = "configured (secret, not recorded)" if seed is not None else "fresh OS entropy"
    return report


def _peer_rates(pool: pd.DataFrame, segments: list[str], epsilon: float | None, seed: int | None) -> pd.DataFrame:
    if epsilon is None:
        won = pool["won"].astype(int).groupby(pool["segment"])
        deals = won.size().reindex(segments, fill_value=0).astype(int)
        wins = won.sum().reindex(segments, fill_value=0).astype(int)
        rate = (wins / deals.where(deals > 0)).to_numpy()
        out = pd.DataFrame({"peer_deals": deals.to_numpy(), "peer_wins": wins.to_numpy(), "peer_win_rate": rate})
        return out.set_axis(pd.Index(segments, name="segment"))
    rng = np.random.default_rng(seed)
    released = dp_segment_win_rates(pool, "segment", "won", epsilon, rng, segments).set_index("segment")
    noisy_n = np.clip(released["deals"].to_numpy(), 1.0, None)
    rate = released["win_rate"].to_numpy()
    # Delta method, noise only (not sampling): Var(W/N) ~ 2 b^2 (1 + r^2) / N^2 for Laplace(b) on W and N.
    scale = L1_SENSITIVITY / epsilon
    noise_sd = np.minimum(scale * np.sqrt(2.0 * (1.0 + rate**2)) / noisy_n, 0.5)
    return pd.DataFrame(
        {
            "peer_deals": released["deals"].to_numpy(),
            "peer_wins": released["wins"].to_numpy(),
            "peer_win_rate": rate,
            "peer_win_rate_noise_sd": noise_sd,
        },
        index=pd.Index(segments, name="segment"),
    )


def _own_rates(own: pd.DataFrame, segments: list[str]) -> pd.DataFrame:
    """The caller's exact decided deals, wins, rate and Wilson 95% interval per segment (NaN where none)."""
    columns = ["decided", "wins", "win_rate", "low", "high"]
    rates = win_rates(own, ["segment"]).set_index("segment") if len(own) else pd.DataFrame(columns=columns)
    rates = rates.reindex(pd.Index(segments, name="segment"))
    rates[["decided", "wins"]] = rates[["decided", "wins"]].fillna(0).astype(int)
    cols = {"decided": "own_decided", "wins": "own_wins", "win_rate": "own_win_rate", "low": "own_low"}
    return (
        rates[columns]
        .astype({"win_rate": float, "low": float, "high": float})
        .rename(columns=cols | {"high": "own_high"})
    )


def _dp_record(epsilon: float) -> dict[str, Any]:
    return {
        "epsilon": epsilon,
        "delta": 0.0,
        "mechanism": "laplace",
        "unit": "one deal",
        "l1_sensitivity": L1_SENSITIVITY,
        "laplace_scale": L1_SENSITIVITY / epsilon,
        "released": "per-segment decided-deal and win counts, each + Laplace(laplace_scale)",
        "rates": "post-processing of the noisy counts (no further privacy cost); win_rate_noise_sd is the noise's "
        "share of their uncertainty, not sampling error",
        "composition": "each run spends epsilon again on every deal in its pool: release once per period",
    }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: numpy scalars to Python, NaN (no deals in the segment) to null."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[key] = value
    return out
