"""Two processes share one Optuna study on the real PostgreSQL: together they run `n_trials`, the leader waits for
the worker, then registers the best; the database password never reaches a file or the console."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import optuna
import pytest
from psycopg.conninfo import conninfo_to_dict

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.alias_state import resolve_alias
from fulqrun_ml.training.sweep_storage import open_study, sqlalchemy_url, study_place
from tests.integration.cdc_helpers import fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLANTED = "Planted-Sweep-Pw-7Q"  # trust auth ignores it; it must still appear nowhere
N_TRIALS = 4


@pytest.fixture()
def study_db(pg_dsn: str) -> Iterator[str]:
    for dsn in fresh_database(pg_dsn, "sweep"):
        parts = conninfo_to_dict(dsn)
        yield (
            f"postgresql://{parts.get('user', 'postgres')}:{PLANTED}@{parts['host']}:{parts['port']}/{parts['dbname']}"
        )


def _sweep(role: str, worker: int) -> list[str]:
    return [
        sys.executable, "-m", "fulqrun_ml.cli", "train", "-m", "hparams_search=deal_win_optuna",
        f"hparams_search.n_trials={N_TRIALS}", "hparams_search.n_startup_trials=1",
        "hparams_search.params.model.choices=[mlp]", "hparams_search.storage_env=FULQRUN_TEST_SWEEP_DB",
        f"hparams_search.role={role}", f"hparams_search.worker={worker}", "hparams_search.wait_timeout_s=300",
        "data.source.n_opportunities=800", "data.source.n_companies=150", "trainer.max_epochs=2",
        "logger=none", "trainer.enable_progress_bar=false",
    ]  # fmt: skip


def test_two_workers_share_one_study_and_the_leader_registers_the_best(study_db, tmp_path):
    env = {**os.environ, "FULQRUN_ROOT": str(tmp_path), "FULQRUN_TEST_SWEEP_DB": study_db}
    procs = [
        subprocess.Popen(_sweep(role, i), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for i, role in enumerate(("leader", "worker"))
    ]
    outputs = [p.communicate(timeout=900)[0].decode() for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]

    study = optuna.load_study(study_name="deal_win_optuna", storage=sqlalchemy_url(study_db))
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert workers == {0, 1}, "both processes must have run trials of the one study"
    assert N_TRIALS <= len(study.trials) <= N_TRIALS + 1  # at most one extra trial per concurrent worker
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]

    summaries = [json.loads(p.read_text()) for p in (tmp_path / "logs" / "deal_win" / "sweeps").glob("*/sweep.json")]
    led = [s for s in summaries if "registered" in s]
    assert len(led) == 1 and len(summaries) == 2, "exactly one process (the leader) registers"
    assert led[0]["workers"] == [0, 1] and led[0]["best_value"] == study.best_value
    assert resolve_alias(tmp_path / "models", "deal_win", "candidate") == led[0]["registered"]["version"]

    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and PLANTED.encode() in p.read_bytes()]
    assert not leaked and all(PLANTED not in o for o in outputs), f"the database password leaked: {leaked}"


def test_a_missing_or_wrong_storage_gets_a_named_error(monkeypatch):
    from omegaconf import OmegaConf

    search = OmegaConf.create({"storage_env": "FULQRUN_TEST_UNSET_DB", "role": "leader", "worker": 0})
    monkeypatch.delenv("FULQRUN_TEST_UNSET_DB", raising=False)
    with pytest.raises(FulqrunMLError, match="FULQRUN_TEST_UNSET_DB is unset"):
        study_place(search)
    with pytest.raises(FulqrunMLError, match="role=worker needs"):
        study_place(OmegaConf.create({"storage_env": None, "role": "worker", "worker": 1}))
    with pytest.raises(FulqrunMLError, match=r"hparams_search\.role"):
        study_place(OmegaConf.create({"storage_env": None, "role": "boss", "worker": 0}))
    monkeypatch.setenv("FULQRUN_TEST_UNSET_DB", f"postgresql://u:{PLANTED}@127.0.0.1:1/nowhere")
    search = OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "hparams_search" / "deal_win_optuna.yaml"), search)
    with pytest.raises(FulqrunMLError, match=r"cannot open the study database in \$FULQRUN_TEST_UNSET_DB") as err:
        open_study(search, study_place(search))
    assert PLANTED not in str(err.value) and err.value.__cause__ is None
