"""Online == offline point-in-time, against real Redis and PostgreSQL: materialise, then the skew check finds 0
mismatches; a planted mismatch (an overwritten Redis field, or rows computed from a perturbed CRM) is caught by
entity and feature. Also: backfill + history queries, and the `fulqrun-ml online` commands end to end."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource, PostgresSource, load_crm_into_postgres, write_crm_directory
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.online import commands
from fulqrun_ml.online.history import FeatureHistory
from fulqrun_ml.online.materialise import backfill, date_grid, materialise
from fulqrun_ml.online.offline import OfflineStoreError, historical_features, offline_features, skew_check
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.views import VIEWS, FeatureView

pytestmark = pytest.mark.integration
DAY = pd.Timedelta(days=1)
SIM = {"n_opportunities": 300, "n_companies": 40, "n_reps": 6, "seed": 4, "n_leads": 150}


@pytest.fixture(scope="module")
def tables():
    return simulate_crm(**SIM).tables


@pytest.fixture
def store(redis_url: str) -> OnlineStore:
    return OnlineStore(redis_url)


def fresh(task: str) -> FeatureView:
    """The task's view under a fresh name, so tests never read each other's keys."""
    return dataclasses.replace(VIEWS[task], name=f"{VIEWS[task].name}_{uuid.uuid4().hex[:8]}")


@pytest.mark.parametrize("task", ["deal_win", "lead_conversion"])
def test_materialised_rows_match_offline_at_their_own_as_of(store, tables, task) -> None:
    view = fresh(task)
    # two batches at different times: the check must recompute each row at its own as_of
    early = materialise(store, view, tables, as_of=tables.extracted_at - pd.Timedelta(days=120, seconds=1.5))
    late = materialise(store, view, tables)
    assert early["entities"] > 0 and late["entities"] > 0
    report = skew_check(store, view, tables, sample=500, seed=1)
    assert report["ok"], report["mismatches"][:5]
    assert report["checked"] == len(store.entity_ids(view)) > 0 and report["mismatch_count"] == 0
    online = store.read(view, store.entity_ids(view))
    assert online["as_of"].nunique() == 2  # both as_ofs are online and were compared


def test_an_overwritten_redis_field_is_caught_by_entity_and_feature(store, tables) -> None:
    view = fresh("deal_win")
    materialise(store, view, tables)
    victim = store.entity_ids(view)[0]
    store.client.hset(view.key(victim), "days_in_stage", "1234.5")
    store.client.hset(view.key(victim), "stage", "closed_won")
    report = skew_check(store, view, tables, sample=500)
    assert not report["ok"] and report["mismatch_count"] == 2
    found = {(m["entity"], m["feature"]) for m in report["mismatches"]}
    assert found == {(victim, "days_in_stage"), (victim, "stage")}
    online = next(m for m in report["mismatches"] if m["feature"] == "stage")
    assert online["online"] == "closed_won" and online["offline"] != "closed_won"


def test_rows_from_a_perturbed_crm_are_caught(store, tables) -> None:
    view = fresh("deal_win")
    as_of = tables.extracted_at.floor("ms")
    target = str(view.open_entities(tables, as_of)[0])
    touch = tables.activities.iloc[[0]].copy()
    touch["id"] = str(uuid.uuid4())
    touch["related_id"], touch["created_at"] = target, as_of - pd.Timedelta(days=2)
    perturbed = dataclasses.replace(tables, activities=pd.concat([tables.activities, touch], ignore_index=True))
    materialise(store, view, perturbed)  # what a buggy writer would have stored
    report = skew_check(store, view, tables, sample=500)
    assert not report["ok"]
    assert {m["entity"] for m in report["mismatches"]} == {target}
    assert {"activities_total", "activities_last_14d"} <= {m["feature"] for m in report["mismatches"]}


def test_the_check_counts_what_it_cannot_compare(store, tables) -> None:
    view = fresh("deal_win")
    materialise(store, view, tables)
    earlier = dataclasses.replace(tables, extracted_at=tables.extracted_at - pd.Timedelta(days=1))
    report = skew_check(store, view, earlier, sample=500)
    assert report["checked"] == 0 and report["after_extraction"] > 0 and not report["ok"]
    assert skew_check(store, view, tables, entity_ids=["nope"])["not_online"] == 1
    with pytest.raises(FieldValidationError, match="sample"):
        skew_check(store, view, tables, sample=0)


def test_materialise_refuses_what_the_snapshot_cannot_know(store, tables) -> None:
    view = fresh("deal_win")
    with pytest.raises(FieldValidationError, match="after the CRM snapshot's extraction"):
        materialise(store, view, tables, as_of=tables.extracted_at + pd.Timedelta(seconds=1))
    with pytest.raises(OfflineStoreError, match="do not exist"):
        materialise(store, view, tables, entity_ids=["not-a-deal"])
    with pytest.raises(FieldValidationError, match="as_of"):
        offline_features(view, tables, pd.DataFrame({"opportunity_id": ["x"], "as_of": [tables.extracted_at + DAY]}))


def test_a_batch_never_overwrites_a_fresher_streamed_row(store, tables) -> None:
    view = fresh("deal_win")
    as_of = tables.extracted_at.floor("ms")
    rows = view.compute_at(tables, view.open_entities(tables, as_of)[:1], as_of)
    store.write(view, rows.assign(value=99.0), seq=12)  # a streamed row, same as_of, newer source event
    summary = materialise(store, view, tables)
    assert summary["skipped_newer_online"] == 1
    assert store.read(view, rows["opportunity_id"].tolist())["value"].iloc[0] == 99.0


def test_skew_with_postgres_and_parquet_snapshots(store, tables, pg_dsn, tmp_path) -> None:
    schema = f"skew_{uuid.uuid4().hex[:8]}"
    load_crm_into_postgres(tables, pg_dsn, schema=schema)
    view = fresh("deal_win")
    summary = materialise(store, view, PostgresSource(dsn=pg_dsn, schema=schema).load())
    assert summary["entities"] > 0
    # a later snapshot of the same database is the offline store
    report = skew_check(store, view, PostgresSource(dsn=pg_dsn, schema=schema).load(), sample=500)
    assert report["ok"] and report["checked"] == summary["entities"], report["mismatches"][:5]
    # a Parquet export of the simulated CRM: materialised from memory, checked against the files
    write_crm_directory(tables, tmp_path / "crm")
    parquet_view = fresh("deal_win")
    materialise(store, parquet_view, tables)
    report = skew_check(store, parquet_view, DirectorySource(tmp_path / "crm").load(), sample=500)
    assert report["ok"] and report["checked"] > 0


def test_backfill_history_and_point_in_time_join(tables, tmp_path) -> None:
    view = fresh("lead_conversion")
    history = FeatureHistory(tmp_path / "history")
    end = tables.extracted_at.normalize()
    dates = date_grid(str((end - pd.Timedelta(days=60)).date()), str(end.date()), 20)
    summary = backfill(view, tables, dates, history)
    assert summary["dates"] == 4 and summary["rows"] > 0
    again = backfill(view, tables, dates, history)  # a re-run does not double rows
    everything = history.query(view)
    assert len(everything) == summary["rows"] == again["rows"]
    parts = list((tmp_path / "history").glob(f"view={view.name}/version={view.version}/date=*/part-*.parquet"))
    assert len(parts) == 8 and not list((tmp_path / "history").rglob(".tmp-*"))
    # every stored row equals a fresh offline computation at its as_of
    recomputed = offline_features(view, tables, everything[["lead_id", "as_of"]])
    for name in view.numeric_names:
        np.testing.assert_allclose(everything[name], recomputed[name], rtol=1e-12, err_msg=name)
    # range + entity filters, and the newest row per entity
    one = everything["lead_id"].iloc[0]
    mine = history.query(view, start=dates[1], end=dates[3], entity_ids=[one])
    assert set(mine["lead_id"]) <= {one} and mine["as_of"].between(dates[1], dates[3], inclusive="left").all()
    latest = history.latest(view, as_of=dates[2])
    assert latest["lead_id"].is_unique and (latest["as_of"] <= dates[2]).all()
    # Feast-style join: a request between two dates gets the newest row at or before it, none before the first
    one = everything.loc[everything["as_of"] == dates[-2], "lead_id"].iloc[0]
    request = pd.DataFrame({"lead_id": [one, one], "as_of": [dates[-1] - pd.Timedelta(hours=1), dates[0] - DAY]})
    joined = historical_features(history, view, request)
    assert joined["feature_as_of"].iloc[0] == dates[-2] and pd.isna(joined["feature_as_of"].iloc[1])
    expected = everything[(everything["lead_id"] == one) & (everything["as_of"] == dates[-2])].iloc[0]
    assert (
        joined["lead_age_days"].iloc[0] == expected["lead_age_days"] and joined["source"].iloc[0] == expected["source"]
    )
    # a torn write (a crash before the rename) leaves only a temporary file, which queries never read
    partition = parts[0].parent
    (partition / ".tmp-part-crashed.parquet").write_bytes(b"PAR1 torn")
    assert len(history.query(view)) == len(everything)


def own_db(redis_url: str, db: int) -> str:
    """The session's server, another database: the commands use the real view names, which other tests
    (the stream worker's, serving by id) may read in database 0."""
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


def _publish(models: Path, version: int, names: list[str]) -> None:
    """A registry version's metadata.json as `registry.store.publish_version` writes it (inputs by name)."""
    path = models / "deal_win" / str(version)
    path.mkdir(parents=True)
    inputs = [{"name": n, "dtype": "float32"} for n in names]
    (path / "metadata.json").write_text(json.dumps({"task": "deal_win", "name": "deal_win", "inputs": inputs}))


def test_materialise_ties_the_view_to_a_model_trained_on_it(redis_url, tmp_path, capsys) -> None:
    redis_url = own_db(redis_url, 5)
    models = tmp_path / "models"
    _publish(models, 1, VIEWS["deal_win"].spec.names)
    _publish(models, 2, [n for n in VIEWS["deal_win"].spec.names if n != "stage"])
    base = ["materialise", "--task", "deal_win", "--sim-n-opportunities", "120", "--redis-url", redis_url]
    base += ["--no-history", "--models-dir", str(models), "--model", "deal_win"]
    assert commands.main([*base, "--model-version", "2"]) == 2
    assert "the model does not read ['stage']" in capsys.readouterr().err
    assert commands.main([*base, "--model-version", "1"]) == 0
    entry = next(e for e in OnlineStore(redis_url).registered_views() if e["name"] == "deal_win_features")
    assert {"model": "deal_win", "version": 1} in entry["models"]
    assert {"model": "deal_win", "version": 2} not in entry["models"]


def test_commands_materialise_skew_backfill_views(redis_url, tmp_path, capsys) -> None:
    redis_url = own_db(redis_url, 6)
    sim = ["--source", "simulator", *[f"--sim-{k.replace('_', '-')}={v}" for k, v in SIM.items()]]
    common = ["--redis-url", redis_url, "--history-dir", str(tmp_path / "h")]
    assert commands.main(["materialise", "--task", "deal_win", *sim, *common]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["entities"] > 0 and done["history"] == str(tmp_path / "h")
    assert commands.main(["skew", "--task", "deal_win", *sim, "--redis-url", redis_url, "--sample", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    view = VIEWS["deal_win"]
    victim = OnlineStore(redis_url).entity_ids(view)[0]
    OnlineStore(redis_url).client.hset(view.key(victim), "value", "-1.0")
    out = tmp_path / "skew.json"
    assert commands.main(["skew", "--task", "deal_win", *sim, "--redis-url", redis_url, "--out", str(out)]) == 1
    assert json.loads(out.read_text())["mismatches"][0]["entity"] == victim
    capsys.readouterr()
    assert (
        commands.main(
            [
                "backfill",
                "--task",
                "deal_win",
                *sim,
                *common,
                "--start",
                "2025-11-01",
                "--end",
                "2025-12-01",
                "--every-days",
                "15",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["dates"] == 3
    assert commands.main(["views", "--redis-url", redis_url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(v["name"] == view.name and v["version"] == view.version for v in listed["registered"])
    assert commands.main(["materialise", "--task", "churn", *sim, "--redis-url", redis_url]) == 2
    assert commands.main(["skew", *sim, "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    assert "unreachable" in capsys.readouterr().err
    assert commands.main(["redis", "status", "--data-dir", str(tmp_path / "no-server")]) == 1
