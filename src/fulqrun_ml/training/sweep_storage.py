"""Where an Optuna study lives: in memory for one process, or in a relational database that several worker
processes (on one host or many) share.

Why a database and not a shared file: Optuna's RDB storage gives every worker an atomic `ask`/`tell` through
SQL transactions, and PostgreSQL is already the project's warehouse. The URL carries a password, so it never
enters a config, a run record or a log: the search config names the *environment variable* that holds it
(`hparams_search.storage_env=FULQRUN_OPTUNA_STORAGE`), and only that name is ever written down.

A worker that dies mid-trial would leave the trial RUNNING for ever and the leader waiting on it; the
storage's heartbeat marks such a trial FAIL after `grace_period_s` without a beat, so the study still ends.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import optuna
from omegaconf import DictConfig

from fulqrun_ml.errors import FulqrunMLError

log = logging.getLogger(__name__)

HEARTBEAT_S = 5
GRACE_PERIOD_S = 30
ROLES = ("leader", "worker")


@dataclass(frozen=True)
class StudyPlace:
    """The resolved storage of one sweep process: in-memory (`url is None`) or a shared database."""

    url: str | None
    env_name: str | None
    role: str
    worker: int

    @property
    def shared(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        """What may be logged: the variable's name, never its value."""
        return f"RDB storage from ${self.env_name}" if self.shared else "in-memory storage"


def study_place(search: DictConfig) -> StudyPlace:
    """Read `storage_env`, `role` and `worker` from the search config, with errors that name the key."""
    env_name = search.get("storage_env")
    role = str(search.get("role", "leader"))
    worker = search.get("worker", 0)
    if role not in ROLES:
        raise FulqrunMLError(f"hparams_search.role: '{role}' is not one of {', '.join(ROLES)}")
    if not isinstance(worker, int) or isinstance(worker, bool) or worker < 0:
        raise FulqrunMLError(f"hparams_search.worker: must be a non-negative integer, got {worker!r}")
    if not env_name:
        if role == "worker":
            raise FulqrunMLError("hparams_search.role=worker needs hparams_search.storage_env (a shared study)")
        return StudyPlace(url=None, env_name=None, role=role, worker=worker)
    url = os.environ.get(str(env_name), "").strip()
    if not url:
        raise FulqrunMLError(
            f"hparams_search.storage_env: the environment variable {env_name} is unset or empty "
            "(it must hold the study database URL, e.g. postgresql://user:password@host:5432/db)"
        )
    return StudyPlace(url=sqlalchemy_url(url), env_name=str(env_name), role=role, worker=worker)


def sqlalchemy_url(url: str) -> str:
    """Optuna speaks SQLAlchemy: a plain libpq URL gets the psycopg 3 driver this project installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_study(search: DictConfig, place: StudyPlace) -> optuna.Study:
    """Create the study, or join it when another worker created it first (same `name`, same storage).

    Each worker seeds its sampler with `seed + worker`, so two workers never draw the same start-up trials."""
    sampler = optuna.samplers.TPESampler(seed=search.seed + place.worker, n_startup_trials=search.n_startup_trials)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=search.pruner.n_startup_trials, n_warmup_steps=search.pruner.n_warmup_steps
    )
    storage = rdb_storage(place) if place.shared else None
    log.info("study %s on %s (role %s, worker %d)", search.name, place.describe(), place.role, place.worker)
    return optuna.create_study(
        direction=search.direction,
        study_name=search.name,
        sampler=sampler,
        pruner=pruner,
        storage=storage,
        load_if_exists=place.shared,
    )


def rdb_storage(place: StudyPlace, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Open the shared storage. Workers started together on an empty database race to create Optuna's tables
    (one of them hits a duplicate-table error), so a failed open is retried a few times before giving up."""
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url=place.url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_PERIOD_S
            )
        except Exception as err:  # SQLAlchemy/driver messages can carry the URL: never echo them
            if attempt == attempts - 1:
                raise FulqrunMLError(
                    f"hparams_search.storage_env: cannot open the study database in ${place.env_name} "
                    f"({type(err).__name__})"
                ) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def trials_left(study: optuna.Study, n_trials: int) -> int:
    """How many more trials this worker may start so that all workers together run `n_trials`."""
    return max(0, n_trials - len(study.trials))


def wait_for_other_workers(study: optuna.Study, timeout_s: float, poll_s: float = 1.0) -> None:
    """The leader registers the winner only once no trial is RUNNING anywhere (or the heartbeat failed it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = [t.number for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
        if not running:
            return
        if time.monotonic() > deadline:
            raise FulqrunMLError(f"sweep: trials {running} still running after {timeout_s:.0f} s of waiting")
        optuna.storages.fail_stale_trials(study)
        time.sleep(poll_s)
