"""data=events: bad tables get errors naming file, column and row; histories are cut at as_of (point-in-time).

Each rule is broken on purpose in a small hand-written table, and the point-in-time tests append future events
(and a future timestamp attribute) to a history and check that nothing a row's model input holds changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.event_fixture import simulate_purchases
from fulqrun_ml.data.event_table import EventTableError, check_label_histories, load_events, load_labels
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.sequence.event_features import (
    PADDING_AGE,
    EventEncoder,
    EventIndex,
    Histories,
    audit_cut,
    cut_histories,
)

EVENTS = [
    ("a", "2024-01-01", "web", 10.0, "2024-01-03"),
    ("a", "2024-01-05", "app", 20.0, "2024-01-09"),
    ("a", "2024-01-20", "web", 5.0, "2024-01-21"),
    ("b", "2024-01-02", "store", 7.5, "2024-01-04"),
    ("b", "2024-02-01", "web", 1.0, "2024-02-02"),
]
LABELS = [("a", "2024-01-10", 1), ("b", "2024-01-15", 0), ("a", "2024-01-25", 0)]


def write(tmp: Path, events=EVENTS, labels=LABELS) -> tuple[Path, Path]:
    e = pd.DataFrame(events, columns=["customer", "ts", "channel", "amount", "delivered"])
    lab = pd.DataFrame(labels, columns=["customer", "as_of", "churned"])
    e.to_csv(tmp / "events.csv", index=False)
    lab.to_csv(tmp / "labels.csv", index=False)
    return tmp / "events.csv", tmp / "labels.csv"


def load(tmp: Path, events=EVENTS, labels=LABELS, target: str = "churned"):
    e_path, l_path = write(tmp, events, labels)
    table = load_events(e_path, "customer", "ts")
    label_table = load_labels(l_path, "customer", "as_of", target)
    check_label_histories(table, label_table, "labels.csv", "as_of")
    return table, label_table


def test_a_good_table_is_typed(tmp_path):
    table, labels = load(tmp_path)
    assert table.columns.categorical == ("channel",)
    assert table.columns.numeric == ("amount",)
    assert table.columns.timestamps == ("delivered",)
    assert labels.kind == "binary" and labels.labels["label"].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("events", "labels", "message"),
    [
        # an unsorted entity: row 2 goes back in time
        (
            [EVENTS[1], EVENTS[0], *EVENTS[2:]],
            LABELS,
            r"events.csv row 2: entity 'a' has 'ts' 2024-01-01.* before its previous event \(row 1",
        ),
        # two events of one entity at the same time
        (
            [*EVENTS, ("b", "2024-02-01", "app", 2.0, "2024-02-03")],
            LABELS,
            r"events.csv rows 5 and 6: entity 'b' has two events at the same 'ts'",
        ),
        # a label for an entity without events
        (EVENTS, [*LABELS, ("zed", "2024-01-10", 1)], r"labels.csv row 4: entity 'zed' has no events in events.csv"),
        # a label before the entity's first event
        (EVENTS, [*LABELS, ("b", "2023-12-01", 1)], r"labels.csv row 4: 'as_of' 2023-12-01.* precedes every event"),
        # a time that is not a date
        ([*EVENTS[:4], ("b", "soon", "web", 1.0, "2024-02-02")], LABELS, r"events.csv row 5: column 'ts' value 'soon'"),
        # a non-numeric target with more than two values
        (
            EVENTS,
            [*LABELS, ("b", "2024-01-20", "maybe")],
            r"labels.csv row 4: target 'churned' value 'maybe' is not a number",
        ),
        # an empty entity
        ([*EVENTS[:4], (None, "2024-02-01", "web", 1.0, "2024-02-02")], LABELS, r"events.csv row 5: column 'customer'"),
        # a duplicated label
        (EVENTS, [*LABELS, ("a", "2024-01-10", 0)], r"labels.csv row 4: entity 'a' has two labels at the same"),
    ],
)
def test_bad_tables_are_refused_naming_file_column_and_row(tmp_path, events, labels, message):
    with pytest.raises(EventTableError, match=message):
        load(tmp_path, events, labels)


def test_missing_columns_name_the_option(tmp_path):
    e_path, l_path = write(tmp_path)
    with pytest.raises(EventTableError, match=r"events.csv: column 'when' \(data.time_col\) is missing"):
        load_events(e_path, "customer", "when")
    with pytest.raises(EventTableError, match=r"labels.csv: column 'churn' \(data.target\) is missing"):
        load_labels(l_path, "customer", "as_of", "churn")
    with pytest.raises(EventTableError, match=r"events file: table file .*nope.csv does not exist"):
        load_events(tmp_path / "nope.csv", "customer", "ts")


def test_sort_and_duplicate_options_accept_what_they_name(tmp_path):
    shuffled = [EVENTS[1], EVENTS[0], *EVENTS[2:], ("b", "2024-02-01", "app", 2.0, "2024-02-03")]
    e_path, _ = write(tmp_path, shuffled)
    table = load_events(e_path, "customer", "ts", sort_events=True, allow_duplicate_times=True)
    a = table.events[table.events.iloc[:, 0] == "a"]
    assert a.iloc[:, 1].is_monotonic_increasing and len(table.events) == 6


def test_a_numeric_target_is_a_regression(tmp_path):
    labels = [("a", "2024-01-10", 3.5), ("b", "2024-01-15", 0.0), ("a", "2024-01-25", 12.0)]
    _, label_table = load(tmp_path, labels=labels)
    assert label_table.kind == "regression"


def inputs(table, labels, as_of=None):
    index = EventIndex(table.events)
    h = cut_histories(index, labels.labels["entity"].to_numpy(), labels.labels["as_of"] if as_of is None else as_of)
    encoder = EventEncoder.fit(table.events, table.columns, h, (7, 30), max_len=4)
    return encoder, index, h


def test_histories_stop_at_as_of_and_future_events_change_nothing(tmp_path):
    table, labels = load(tmp_path)
    encoder, index, h = inputs(table, labels)
    assert (h.end - h.start).tolist() == [2, 1, 3]  # a@01-10 sees 2 events, b@01-15 one, a@01-25 three
    aggregates, sequences = encoder.transform(table.events, index, h)
    assert aggregates["n_events"].tolist() == [2, 1, 3]
    assert aggregates["sum_amount"].tolist() == [30.0, 7.5, 35.0]
    assert (sequences["age_days"][sequences["age_days"] != PADDING_AGE] >= 0).all()
    # The delivery of a's second order (01-09) is known at 01-10; of b's first (01-04) at 01-15.
    assert aggregates["mean_delivered_lag_days"].tolist()[1] == pytest.approx(2.0)

    # Future events (after every as_of) appended: every row's inputs stay exactly the same.
    future = [*EVENTS[:2], ("a", "2024-01-11", "store", 999.0, "2024-01-12"), *EVENTS[2:]]
    future_table, future_labels = load(tmp_path, future)
    index2 = EventIndex(future_table.events)
    h2 = cut_histories(index2, future_labels.labels["entity"].to_numpy(), future_labels.labels["as_of"])
    aggregates2, sequences2 = encoder.transform(future_table.events, index2, h2)
    pd.testing.assert_frame_equal(aggregates.iloc[:2], aggregates2.iloc[:2])
    for name, values in sequences.items():
        np.testing.assert_array_equal(values[:2], sequences2[name][:2], err_msg=name)
    assert aggregates2["n_events"].iloc[2] == 4  # the row after it does see it


def test_a_timestamp_attribute_after_as_of_is_not_read(tmp_path):
    late = [("a", "2024-01-01", "web", 10.0, "2024-01-30"), *EVENTS[1:]]
    table, labels = load(tmp_path, late)
    encoder, index, h = inputs(table, labels)
    aggregates, sequences = encoder.transform(table.events, index, h)
    # a@01-10: the first order's delivery (01-30) is in the future, only the second's (4 days) is known.
    assert aggregates["mean_delivered_lag_days"].iloc[0] == pytest.approx(4.0)
    assert sequences["seq_delivered"][0, -2] == 0.0  # unknown -> the standardised mean (0), not the future lag


def test_the_audit_catches_a_cut_that_reads_the_future(tmp_path):
    table, labels = load(tmp_path)
    _, index, h = inputs(table, labels)
    assert audit_cut(index, h)["violations"] == 0
    broken = Histories(h.start, np.minimum(h.end + 1, len(table.events)), h.as_of_ns)  # one event too many
    with pytest.raises(LeakageError, match="point-in-time violation"):
        audit_cut(index, broken)


def test_the_fixture_has_declining_frequency_before_churn():
    fixture = simulate_purchases(n_customers=300, seed=3)
    events, truth = fixture.events, fixture.truth.set_index("customer_id")
    day = (events["ts"] - pd.Timestamp("2024-01-01", tz="UTC")).dt.total_seconds() / 86400
    churn = truth.loc[events["customer_id"], "churn_day"].to_numpy()
    start = truth.loc[events["customer_id"], "decline_start"].to_numpy()
    signup = truth.loc[events["customer_id"], "signup_day"].to_numpy()
    assert (day <= churn + 1e-6).all() and (day >= signup - 1e-6).all()  # nothing after churn
    in_decline = (day > start).to_numpy()
    sale = (events["category"] == "sale").to_numpy()
    assert sale[in_decline].mean() > 2 * sale[~in_decline].mean()  # the mix drifts to sale before churn
    assert fixture.labels["churned"].between(0, 1).all() and 0.05 < fixture.labels["churned"].mean() < 0.4
