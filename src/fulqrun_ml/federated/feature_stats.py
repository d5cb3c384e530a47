"""Fit one FeatureSpec across organisations from sufficient statistics, never from pooled rows.

What `FeatureSpec.fit` learns, and how each piece is rebuilt from per-organisation aggregates:

- numeric standardisation (mean, population std of the transformed column): each client sends
  (count, mean, M2), M2 being the sum of squared deviations from its own mean. The server merges them with Chan et
  al.'s parallel update: n = n_a + n_b, delta = mean_b - mean_a, mean = mean_a + delta n_b / n,
  M2 = M2_a + M2_b + delta^2 n_a n_b / n. This is exact algebra, and numerically stabler than sums of squares.
  std = sqrt(M2 / n), as `np.std` (ddof 0) computes it centrally;
- vocabularies: the union of the clients' category names (sorted, like the central fit);
- modes: the category with the largest summed count, ties going to the smallest name as `pandas.mode` does.

Not supported: `impute_missing` columns, whose fill value is a median. A median has no exact sufficient statistic,
so such a spec is refused by name rather than fitted approximately. The deal-win spec has none.

Privacy note: the statistics are aggregates over an organisation's training split, but a category's name and count
are revealed (an industry seen once is visible as a 1). Add DP noise here before relying on it against a curious
server.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.features.spec import FeatureSpec, FittedFeatureSpec, validate_frame


def feature_statistics(spec: FeatureSpec, frame: pd.DataFrame) -> dict[str, Any]:
    """One organisation's sufficient statistics of its training split (the `stats` message's header fields)."""
    refuse_medians(spec)
    validate_frame(spec, frame)
    numeric: dict[str, dict[str, float]] = {}
    for feat in spec.numeric:
        values = frame[feat.name].to_numpy(dtype=np.float64)
        values = np.log1p(values) if feat.log1p else values
        mean = float(values.mean()) if len(values) else 0.0
        numeric[feat.name] = {"count": len(values), "mean": mean, "m2": float(((values - mean) ** 2).sum())}
    categories = {
        feat.name: {str(k): int(v) for k, v in frame[feat.name].astype(str).value_counts().items()}
        for feat in spec.categorical
    }
    return {"n_rows": len(frame), "numeric": numeric, "categories": categories}


def fit_from_statistics(spec: FeatureSpec, statistics: Iterable[Mapping[str, Any]]) -> FittedFeatureSpec:
    """The FittedFeatureSpec the central fit would give on the union of the clients' training rows."""
    refuse_medians(spec)
    parts = [s for s in statistics if s["n_rows"] > 0]
    if not parts:
        raise FieldValidationError("n_rows", "no client has training rows to fit the FeatureSpec on")
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    for feat in spec.numeric:
        count, mean, m2 = 0, 0.0, 0.0
        for part in parts:
            stats = part["numeric"].get(feat.name)
            if stats is None:
                raise FieldValidationError(feat.name, "missing from a client's statistics")
            count, mean, m2 = merge_moments((count, mean, m2), (int(stats["count"]), stats["mean"], stats["m2"]))
        means[feat.name] = mean
        stds[feat.name] = math.sqrt(m2 / count) or 1.0
    vocabularies: dict[str, list[str]] = {}
    modes: dict[str, str] = {}
    for feat in spec.categorical:
        totals: dict[str, int] = {}
        for part in parts:
            for value, n in part["categories"].get(feat.name, {}).items():
                totals[value] = totals.get(value, 0) + int(n)
        if not totals:
            raise FieldValidationError(feat.name, "no client reported any category")
        vocabularies[feat.name] = sorted(totals)
        modes[feat.name] = min(totals, key=lambda v: (-totals[v], v))
    return FittedFeatureSpec(spec=spec, means=means, stds=stds, vocabularies=vocabularies, modes=modes)


def merge_moments(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    """Chan et al.'s pairwise merge of (count, mean, M2)."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    if n_b == 0:
        return a
    if n_a == 0:
        return b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


def refuse_medians(spec: FeatureSpec) -> None:
    for feat in spec.numeric:
        if feat.impute_missing:
            raise FieldValidationError(
                feat.name,
                "impute_missing needs a median, which has no exact sufficient statistic; a federated FeatureSpec "
                "cannot fit it (impute before federating, or drop the column)",
            )
