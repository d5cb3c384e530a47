"""Sources behind one interface: the simulator, Parquet/CSV export directories, and any user table."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.contract import EVENT_TABLE_COLUMNS, HISTORY_COLUMNS, TABLE_COLUMNS, CRMTables
from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.data.sources import DirectorySource, SimulatorSource, SourceError, write_crm_directory
from fulqrun_ml.data.user_tables import ColumnKind, TableSource, infer_column_kind
from fulqrun_ml.data.validation import CRMValidationError, validate_crm

SIM_ARGS = {"n_opportunities": 50, "n_companies": 12, "n_reps": 6, "seed": 4}


@pytest.fixture(scope="module")
def simulated() -> SimulatedCRM:
    return SimulatorSource(**SIM_ARGS)()


def test_simulator_source_returns_validated_tables_and_the_latent_truth(simulated):
    raw = simulate_crm(**SIM_ARGS)
    assert isinstance(simulated, SimulatedCRM)
    pd.testing.assert_frame_equal(simulated.latent, raw.latent)
    expected = validate_crm(raw.tables).tables
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(simulated.tables.table(name), expected.table(name))
        assert list(simulated.tables.table(name).columns) == list(TABLE_COLUMNS[name])
    assert str(simulated.tables.activities["created_at"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_directory_round_trip_is_identical(simulated, tmp_path, fmt):
    tables = simulated.tables
    write_crm_directory(tables, tmp_path, fmt)
    # Optional event tables are written only when they hold rows (the default story has MEDDPICC writes and notes;
    # lead_events and the lifecycle tables are opt-in stories).
    events = [name for name in EVENT_TABLE_COLUMNS if len(getattr(tables, name))]
    assert {"meddpicc_events", "notes"} <= set(events)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(f"{name}.{fmt}" for name in (*TABLE_COLUMNS, *HISTORY_COLUMNS, *events)), "crm_export.json"]
    )
    source = DirectorySource(tmp_path)
    loaded = source()
    assert loaded.extracted_at == tables.extracted_at and source.report is not None and source.report.ok
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(loaded.table(name), tables.table(name), check_exact=True, obj=name)
    for name in HISTORY_COLUMNS:  # the slowly changing attributes travel with the export
        pd.testing.assert_frame_equal(loaded.history(name), tables.history(name), check_exact=True, obj=name)
    for name in events:  # and the MEDDPICC writes and notes
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(tables, name), check_exact=True, obj=name)
    assert all(len(getattr(loaded, name)) == 0 for name in set(EVENT_TABLE_COLUMNS) - set(events))


def test_csv_timestamps_are_parsed_as_utc(simulated, tmp_path):
    write_crm_directory(simulated.tables, tmp_path, "csv")
    orgs = pd.read_csv(tmp_path / "organizations.csv", dtype=str)
    orgs["created_at"] = "2024-01-01T02:00:00+02:00"
    orgs.to_csv(tmp_path / "organizations.csv", index=False)
    loaded = DirectorySource(tmp_path)()
    assert loaded.organizations["created_at"].iloc[0] == pd.Timestamp("2024-01-01T00:00:00", tz="UTC")


def test_a_bad_csv_cell_is_quarantined_with_its_reason(simulated, tmp_path):
    export, quarantine = tmp_path / "export", tmp_path / "quarantine"
    write_crm_directory(simulated.tables, export, "csv")
    opps = pd.read_csv(export / "opportunities.csv", dtype=str, keep_default_na=False)
    opps.loc[3, "value"] = "12k"
    opps.to_csv(export / "opportunities.csv", index=False)

    with pytest.raises(CRMValidationError, match=r"opportunities row 3 .*field 'value': wrong_type '12k'"):
        DirectorySource(export)()
    source = DirectorySource(export, on_error="quarantine", quarantine_dir=quarantine, quarantine_format="csv")
    loaded = source()
    assert source.report is not None and source.report.counts()["opportunities"] == {"wrong_type": 1}
    assert opps.loc[3, "id"] not in set(loaded.opportunities["id"])
    rejected = pd.read_csv(quarantine / "opportunities.rejected.csv", dtype=str)
    assert rejected[["_row", "value", "_reasons"]].values.tolist() == [["3", "12k", "wrong_type(value)"]]
    assert json.loads((quarantine / "report.json").read_text())["rows_rejected"]["opportunities"] == 1


def test_missing_and_ambiguous_files_are_named(simulated, tmp_path):
    tables = simulated.tables
    no_leads = dataclasses.replace(
        tables,
        activities=tables.activities[tables.activities["related_type"] != "lead"],
        notes=tables.notes[tables.notes["related_type"] != "lead"],
    )
    write_crm_directory(no_leads, tmp_path, "parquet")
    (tmp_path / "leads.parquet").unlink()
    assert DirectorySource(tmp_path)().leads.empty  # a CRM without leads is allowed
    (tmp_path / "users.parquet").unlink()
    with pytest.raises(SourceError, match=r"table 'users' is missing: expected users\.parquet or users\.csv"):
        DirectorySource(tmp_path)()
    simulated.tables.users.to_csv(tmp_path / "users.csv", index=False)
    simulated.tables.users.to_parquet(tmp_path / "users.parquet", index=False)
    with pytest.raises(SourceError, match=r"both users\.parquet and users\.csv"):
        DirectorySource(tmp_path)()
    assert len(DirectorySource(tmp_path, format="parquet")().users) == len(simulated.tables.users)
    with pytest.raises(SourceError, match="write csv to another directory"):
        write_crm_directory(simulated.tables, tmp_path, "csv")


def test_extraction_time_is_required(simulated, tmp_path):
    write_crm_directory(simulated.tables, tmp_path, "parquet")
    (tmp_path / "crm_export.json").unlink()
    with pytest.raises(SourceError, match="extracted_at"):
        DirectorySource(tmp_path)()
    loaded = DirectorySource(tmp_path, extracted_at="2026-01-01T00:00:00Z")()
    assert loaded.extracted_at == pd.Timestamp("2026-01-01", tz="UTC")
    with pytest.raises(SourceError, match="does not exist"):
        DirectorySource(tmp_path / "nowhere")()


def test_a_source_is_the_callable_a_datamodule_takes(simulated, tmp_path):
    write_crm_directory(simulated.tables, tmp_path, "parquet")
    source = DirectorySource(tmp_path)
    assert isinstance(source(), CRMTables)
    early = dataclasses.replace(simulated.tables, extracted_at=pd.Timestamp("2024-02-01", tz="UTC"))
    write_crm_directory(early, tmp_path, "parquet")  # rows now lie after the extraction time
    with pytest.raises(CRMValidationError, match="future_timestamp"):
        source()


# --- any user table ---------------------------------------------------------------------------------


def user_frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = np.array(["renewal", "pricing", "blocked", "legal", "review", "champion", "budget", "timeline"])
    return pd.DataFrame(
        {
            "account_id": np.arange(1000, 1000 + n),
            "external_ref": [f"{i:08x}-aaaa-4bbb-8ccc-{i:012x}" for i in range(n)],
            "seats": rng.integers(1, 500, n),
            "arr": rng.lognormal(10, 1, n).round(2),
            "arr_text": [f"{v:.2f}" for v in rng.lognormal(10, 1, n)],
            "plan": rng.choice(["free", "team", "enterprise"], n),
            "signed_up": pd.date_range("2023-01-01", periods=n, freq="D").strftime("%Y-%m-%dT%H:%M:%S"),
            "notes": [" ".join(rng.choice(words, 6)) for _ in range(n)],
            "churned": rng.integers(0, 2, n),
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_user_table_kinds_are_inferred_and_reported(tmp_path, fmt):
    frame = user_frame()
    path = tmp_path / f"accounts.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    table = TableSource(path, target="churned")()
    assert table.kinds == {
        "account_id": ColumnKind.ID,
        "external_ref": ColumnKind.ID,
        "seats": ColumnKind.NUMERIC,
        "arr": ColumnKind.NUMERIC,
        "arr_text": ColumnKind.NUMERIC,
        "plan": ColumnKind.CATEGORICAL,
        "signed_up": ColumnKind.DATETIME,
        "notes": ColumnKind.TEXT,
        "churned": ColumnKind.NUMERIC,
    }
    assert table.target_kind == "binary"
    assert set(table.feature_columns) == {"seats", "arr", "arr_text", "plan", "signed_up", "notes"}
    assert str(table.frame["signed_up"].dtype).endswith("UTC]") and table.frame["arr_text"].dtype == "float64"
    report = table.report()
    assert list(report.columns) == ["column", "kind", "dtype", "n_missing", "n_unique", "why"]
    assert report.set_index("column").loc["plan", "n_unique"] == 3


def test_user_table_time_and_id_columns(tmp_path):
    frame = user_frame(50).assign(when=lambda f: f["signed_up"])
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = TableSource(tmp_path / "t.csv", target="arr", time_col="when", id_col="external_ref")()
    assert table.kinds["when"] is ColumnKind.DATETIME and table.kinds["external_ref"] is ColumnKind.ID
    assert table.frame["when"].iloc[0] == pd.Timestamp("2023-01-01", tz="UTC")
    assert table.target_kind == "regression" and "when" not in table.feature_columns

    frame.loc[7, "when"] = "someday"
    frame.to_csv(tmp_path / "bad_time.csv", index=False)
    with pytest.raises(SourceError, match="time_col 'when': 1 value"):
        TableSource(tmp_path / "bad_time.csv", target="arr", time_col="when")()
    frame.loc[9, "external_ref"] = frame.loc[8, "external_ref"]
    frame.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(SourceError, match="id_col 'external_ref' must be unique and filled: 2 duplicated"):
        TableSource(tmp_path / "dup.csv", target="arr", id_col="external_ref")()


def test_user_table_errors_name_the_problem(tmp_path):
    user_frame(20).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SourceError, match=r"target 'won' is not a column of t\.csv"):
        TableSource(tmp_path / "t.csv", target="won")()
    with pytest.raises(SourceError, match="does not exist"):
        TableSource(tmp_path / "missing.csv", target="won")()
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(SourceError, match=r"only \.csv and \.parquet"):
        TableSource(tmp_path / "t.json", target="won")()
    pd.DataFrame({"x": [1, 2], "y": [None, None]}).to_csv(tmp_path / "empty_target.csv", index=False)
    with pytest.raises(SourceError, match=r"target 'y' in empty_target\.csv has no values"):
        TableSource(tmp_path / "empty_target.csv", target="y")()


@pytest.mark.parametrize(
    ("values", "name", "kind"),
    [
        (pd.Series([True, False, True]), "flag", ColumnKind.CATEGORICAL),
        (pd.Series(["a", "b", None] * 30, dtype="str"), "grade", ColumnKind.CATEGORICAL),
        (pd.Series([f"user{i}@x.io" for i in range(100)], dtype="str"), "email", ColumnKind.ID),
        (pd.Series([f"c{i % 70}" for i in range(100)], dtype="str"), "city", ColumnKind.CATEGORICAL),
        (pd.Series(["2024-01-01", "2024-02-30"], dtype="str"), "d", ColumnKind.CATEGORICAL),  # not all dates
        (pd.Series([None, None], dtype="str"), "blank", ColumnKind.CATEGORICAL),
    ],
)
def test_infer_column_kind_rules(values, name, kind):
    assert infer_column_kind(values, name)[0] is kind


def test_the_datamodule_builds_the_same_dataset_from_a_directory_export(simulated, tmp_path):
    from fulqrun_ml.datamodules.tabular import DealWinDataModule

    write_crm_directory(simulated.tables, tmp_path, "csv")
    hashes = []
    for source in (SimulatorSource(**SIM_ARGS), DirectorySource(tmp_path)):
        module = DealWinDataModule(source=source, snapshot_every_days=28, warmup_days=30)
        module.setup()
        assert module.sizes["snapshots"] > 0
        hashes.append(module.data_hash)
    assert hashes[0] == hashes[1]
