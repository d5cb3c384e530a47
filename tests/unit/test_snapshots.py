"""Point-in-time correctness: no feature may see the future of its label."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.snapshots import deal_win_snapshots, snapshot_dates, time_split
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features


def truncate_to(tables, as_of):
    """What the CRM looked like at as_of: later rows gone, mutable fields overwritten with junk."""
    opps = tables.opportunities.copy()
    opps["stage"] = "closed_won"
    opps["probability"] = 1.0
    opps["close_date"] = as_of + pd.Timedelta(days=999)
    opps["meddpicc_score"] = 100
    return dataclasses.replace(
        tables,
        opportunities=opps,
        stage_history=tables.stage_history[tables.stage_history["changed_at"] <= as_of],
        activities=tables.activities[tables.activities["created_at"] <= as_of],
    )


@pytest.fixture(scope="module")
def snapshots(tiny_crm):
    dates = snapshot_dates(tiny_crm.tables, every_days=28, warmup_days=60, horizon_days=180)
    return dates, deal_win_snapshots(tiny_crm.tables, dates, horizon_days=180)


def test_features_ignore_everything_after_as_of(tiny_crm, snapshots):
    dates, snaps = snapshots
    for as_of in dates[:: max(1, len(dates) // 4)]:
        index = snaps[snaps["as_of"] == as_of]
        assert len(index) > 0
        full = compute_deal_features(tiny_crm.tables, index)
        past_only = compute_deal_features(truncate_to(tiny_crm.tables, as_of), index)
        pd.testing.assert_frame_equal(full, past_only)


def test_a_planted_future_feature_would_be_caught(tiny_crm, snapshots):
    """The truncation check above is sharp: a feature reading the final stage differs after truncation."""
    dates, snaps = snapshots
    as_of = dates[len(dates) // 2]
    index = snaps[snaps["as_of"] == as_of]

    def leaky(tables):
        return tables.opportunities.set_index("id")["stage"].reindex(index["opportunity_id"]).to_numpy()

    assert not np.array_equal(leaky(tiny_crm.tables), leaky(truncate_to(tiny_crm.tables, as_of)))


def test_rows_are_open_deals_labelled_by_their_later_close(tiny_crm, snapshots):
    _, snaps = snapshots
    opps = tiny_crm.tables.opportunities.set_index("id")
    assert (snaps["label_time"] > snaps["as_of"]).all()
    assert (snaps["label_time"] <= snaps["as_of"] + pd.Timedelta(days=180)).all()
    final = opps.loc[snaps["opportunity_id"], "stage"].to_numpy()
    np.testing.assert_array_equal(snaps["label"].to_numpy() == 1.0, final == "closed_won")
    assert (snaps["stage_index"].between(0, len(OPEN_STAGES) - 1)).all()
    created = opps.loc[snaps["opportunity_id"], "created_at"].to_numpy()
    assert (created <= snaps["as_of"].to_numpy()).all()


def test_time_split_embargoes_labels_from_later_periods(snapshots):
    dates, snaps = snapshots
    split = time_split(dates, 0.15, 0.15)
    which = split.assign(snaps)
    train, val, test = (snaps[which == s] for s in ("train", "val", "test"))
    assert len(train) and len(val) and len(test)
    assert train["as_of"].max() < val["as_of"].min() <= val["as_of"].max() < test["as_of"].min()
    assert (train["label_time"] < split.val_start).all()
    assert (val["label_time"] < split.test_start).all()


def test_time_split_refuses_too_few_dates():
    dates = list(pd.date_range("2024-01-01", periods=2, freq="14D", tz="UTC"))
    with pytest.raises(ValueError, match="too few"):
        time_split(dates, 0.4, 0.4)


def test_features_are_declared_once_and_never_read_the_truth(snapshots, tiny_crm):
    _, snaps = snapshots
    features = compute_deal_features(tiny_crm.tables, snaps.head(50))
    assert list(features.columns) == ["opportunity_id", "as_of", *DEAL_WIN_FEATURES.names]
    forbidden = {"label", "oracle_probability", "true_win_probability", "rep_probability", "probability"}
    assert not forbidden & set(DEAL_WIN_FEATURES.names)
    assert np.isfinite(features[[f.name for f in DEAL_WIN_FEATURES.numeric]].to_numpy(dtype=float)).all()


def test_leakage_audit_passes_on_real_features_and_catches_a_planted_leak(tiny_crm, snapshots):
    from fulqrun_ml.features.audit import LeakageError, audit_point_in_time

    _, snaps = snapshots
    _, sources = compute_deal_features(tiny_crm.tables, snaps, with_sources=True)
    summary = audit_point_in_time(sources, DEAL_WIN_FEATURES.names)
    assert summary["violations"] == 0 and summary["rows_audited"] == len(snaps)
    # Plant a feature that reads the deal's final close date (known only later): the audit must refuse it.
    close_date = tiny_crm.tables.opportunities.set_index("id")["close_date"]
    sources["days_to_close_leak"] = close_date.reindex(sources["opportunity_id"]).to_numpy()
    with pytest.raises(LeakageError, match="'days_to_close_leak'"):
        audit_point_in_time(sources, [*DEAL_WIN_FEATURES.names, "days_to_close_leak"])


def test_censoring_weights_give_back_the_label_mix_the_embargo_censors():
    """A stationary stream of deals whose wins take longer to close: the embargo before the test period keeps
    mostly the quick losses of late validation dates; inverse-probability weights restore the true win rate."""
    rng = np.random.default_rng(0)
    dates = list(pd.date_range("2025-01-06", periods=30, freq="7D"))
    rows = []
    for as_of in dates:
        delay = rng.integers(1, 50, size=400)
        rows.append(pd.DataFrame({"as_of": as_of, "delay": delay, "label": (delay > 25).astype(float)}))
    frame = pd.concat(rows, ignore_index=True)
    frame["label_time"] = frame["as_of"] + pd.to_timedelta(frame["delay"], unit="D")
    split = time_split(dates, 0.3, 0.2)
    assigned = split.assign(frame)
    weights = split.censoring_weights(frame, assigned)
    true_rate = frame["label"].mean()
    for name in ("train", "val"):
        kept = (assigned == name).to_numpy()
        raw = frame.loc[kept, "label"].mean()
        weighted = np.average(frame.loc[kept, "label"], weights=weights[kept])
        assert raw < true_rate - 0.03 and abs(weighted - true_rate) < 0.015, (name, raw, weighted, true_rate)
        assert np.isclose(weights[kept].mean(), 1.0)
    assert np.all(weights[(assigned == "test").to_numpy()] == 1.0)
    # A horizon-embargoed task: one delay for every row, nothing to re-weight.
    by_horizon = frame.assign(label_time=frame["as_of"] + pd.Timedelta(days=30))
    np.testing.assert_allclose(split.censoring_weights(by_horizon, split.assign(by_horizon)), 1.0)


def test_censoring_weights_restore_labels_slower_than_the_validation_period():
    """Wins take up to 50 days, the validation period is 3 weekly dates (longest window 21 days): no weight can
    bring back a 30-day win there, so only the training period's delay-label mix restores validation's rate."""
    rng = np.random.default_rng(1)
    dates = list(pd.date_range("2025-01-06", periods=40, freq="7D"))
    rows = []
    for as_of in dates:
        delay = rng.integers(1, 50, size=3000)
        rows.append(pd.DataFrame({"as_of": as_of, "delay": delay, "label": (delay > 15).astype(float)}))
    frame = pd.concat(rows, ignore_index=True)
    frame["label_time"] = frame["as_of"] + pd.to_timedelta(frame["delay"], unit="D")
    split = time_split(dates, 0.075, 0.2)
    assigned = split.assign(frame)
    weights = split.censoring_weights(frame, assigned)
    val = (assigned == "val").to_numpy()
    weighted = np.average(frame.loc[val, "label"], weights=weights[val])
    assert abs(weighted - frame["label"].mean()) < 0.02, (weighted, frame["label"].mean())
    # Labels that are not 0/1 (a regression target) keep the plain inverse-probability weights.
    days = frame.assign(label=frame["delay"].astype(float))
    plain = split.censoring_weights(days, assigned)
    assert np.isclose(plain[val].mean(), 1.0) and not np.allclose(plain[val], weights[val])
