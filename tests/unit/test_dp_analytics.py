"""DP segment win rates: noise scale follows epsilon, bad input names the field."""

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.privacy.dp_analytics import DPAnalyticsError, dp_segment_win_rates


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    seg = rng.choice(["smb", "mid", "ent"], size=3000)
    return pd.DataFrame({"segment": seg, "won": (rng.random(3000) < 0.3).astype(int)})


def test_error_shrinks_with_epsilon_and_is_laplace_scaled() -> None:
    frame = _frame()
    true_counts = frame.groupby("segment")["won"].count().reindex(["smb", "mid", "ent"]).to_numpy()
    errs = {}
    for eps in (0.1, 10.0):
        rng = np.random.default_rng(1)
        diffs = [
            dp_segment_win_rates(frame, "segment", "won", eps, rng, ["smb", "mid", "ent"])["deals"].to_numpy()
            - true_counts
            for _ in range(400)
        ]
        errs[eps] = float(np.mean(np.abs(diffs)))
        # Laplace(b) has mean absolute deviation b = 2/eps.
        assert errs[eps] == pytest.approx(2.0 / eps, rel=0.15)
    assert errs[10.0] < errs[0.1]


def test_bad_input_names_field() -> None:
    frame = _frame()
    with pytest.raises(DPAnalyticsError, match="epsilon"):
        dp_segment_win_rates(frame, "segment", "won", 0.0, np.random.default_rng(0))
    with pytest.raises(DPAnalyticsError, match="'region'"):
        dp_segment_win_rates(frame, "region", "won", 1.0, np.random.default_rng(0))
    frame.loc[5, "won"] = 7
    with pytest.raises(DPAnalyticsError, match="row 5"):
        dp_segment_win_rates(frame, "segment", "won", 1.0, np.random.default_rng(0))
