"""`fulqrun-ml serve --replicas N`: N Triton processes on their own loopback ports behind one nginx.

Why replicas on one host: a replica that crashes (or is SIGKILLed by the OOM killer) must not fail a request,
and a new model version must roll out without any failed request. nginx (serving/nginx.py) retries a request
that broke on one replica on the next one; this module adds what nginx-light lacks, an active readiness loop:

- every `probe_interval_s` each replica is probed (process alive, server ready, every served model ready);
- a replica that is not ready is marked `down` in the generated nginx.conf and nginx reloads gracefully;
- a replica whose process died is restarted on the same ports and marked up once ready again;
- `rolling_update` takes one replica at a time out of nginx, loads the new version there (Triton's explicit model
  control), waits until it is ready, and puts it back, so the others carry the traffic meanwhile.

Each replica has its own model repository directory (nothing on disk is shared between replicas, as on
separate hosts) and its own control key (serving/access.py). The set writes `replicas.json` in its run
directory so that a later `fulqrun-ml models promote` in another process can roll the promotion out
(serving/deploy.py: sync_live_server).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulqrun_ml.errors import ServingError
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.control import ModelController
from fulqrun_ml.serving.nginx import HOST, Nginx, Upstream
from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer

log = logging.getLogger(__name__)
STATE_FILE = "replicas.json"
ConfigsFor = Callable[[ModelVersion], list[TritonModelConfig]]


@dataclass
class Replica:
    """One Triton process and the repository only it reads."""

    index: int
    server: TritonServer
    builder: TritonRepositoryBuilder
    in_rotation: bool = True

    def upstream(self) -> Upstream:
        return Upstream(self.server.triton_http_port, self.server.grpc_port, down=not self.in_rotation)


class ReplicaSet:
    """N replicas of one registry version behind nginx, with an active readiness loop. A context manager."""

    def __init__(
        self,
        version: ModelVersion,
        configs_for: ConfigsFor,
        run_dir: Path,
        replicas: int,
        http_port: int,
        grpc_port: int,
        probe_interval_s: float = 0.5,
        restart_dead: bool = True,
    ) -> None:
        if replicas < 1:
            raise ServingError(f"--replicas must be at least 1, got {replicas}")
        self.version = version
        self.configs_for = configs_for
        self.run_dir = Path(run_dir).resolve()
        self.probe_interval_s = probe_interval_s
        self.restart_dead = restart_dead
        self.nginx = Nginx(self.run_dir, http_port, grpc_port)
        self.replicas: list[Replica] = []
        self.restarts = 0
        names = [c.name for c in configs_for(version)]
        for index in range(replicas):
            repo = self.run_dir / f"replica-{index}" / "triton_repo"
            builder = TritonRepositoryBuilder(repo)
            for config in configs_for(version):
                builder.add(version, config)
            server = TritonServer(repo, explicit_models=names, log_path=self.run_dir / f"replica-{index}.log")
            self.replicas.append(Replica(index, server, builder))
        self._lock = threading.RLock()  # one membership change (probe, rollout) at a time
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.nginx.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.nginx.grpc_port}"

    def start(self, timeout_s: float = 120.0) -> ReplicaSet:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with ThreadPoolExecutor(len(self.replicas)) as pool:  # replicas load their models concurrently
                list(pool.map(lambda r: r.server.start(timeout_s), self.replicas))
            self.nginx.start(self._upstreams())
        except BaseException:
            self.stop()
            raise
        self._write_state()
        self._stop.clear()
        self._prober = threading.Thread(target=self._probe_loop, name="replica-prober", daemon=True)
        self._prober.start()
        return self

    def _upstreams(self) -> list[Upstream]:
        upstreams = [r.upstream() for r in self.replicas]
        if all(u.down for u in upstreams):  # nginx answers 502 itself; keep the list valid for the reload
            upstreams = [Upstream(u.http_port, u.grpc_port) for u in upstreams]
        return upstreams

    def _set_rotation(self, replica: Replica, in_rotation: bool) -> None:
        with self._lock:
            if replica.in_rotation != in_rotation:
                replica.in_rotation = in_rotation
                self.nginx.reload(self._upstreams())
                log.info("replica %d %s rotation", replica.index, "back in" if in_rotation else "out of")

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.probe_interval_s):
            for replica in self.replicas:
                if self._stop.is_set():
                    return
                try:
                    self.probe(replica)
                except Exception:  # the loop must outlive one bad probe; the log says why
                    log.exception("probing replica %d failed", replica.index)

    def probe(self, replica: Replica) -> None:
        """Take a not-ready replica out of rotation; restart a dead one; put a ready one back."""
        with self._lock:
            process = replica.server.process
            dead = process is None or process.poll() is not None
            if dead:
                self._set_rotation(replica, False)
                if not self.restart_dead:
                    return
                log.warning("replica %d died; restarting it:\n%s", replica.index, replica.server.log_tail(5))
                replica.server.stop()
                replica.server.start()
                self.restarts += 1
            self._set_rotation(replica, replica.server.is_ready())

    def rolling_update(self, version: ModelVersion) -> None:
        """Serve `version` on every replica, one at a time, each out of rotation while it loads."""
        with self._lock:
            for replica in self.replicas:
                others_up = any(r.in_rotation for r in self.replicas if r is not replica)
                if others_up:
                    self._set_rotation(replica, False)
                controller = ModelController(replica.server.http_url, replica.builder)
                try:
                    for config in self.configs_for(version):
                        controller.deploy(version, config)
                finally:
                    controller.close()
                self._set_rotation(replica, True)
            self.version = version
            self._write_state()

    def _write_state(self) -> None:
        state = {
            "model": self.version.name,
            "version": self.version.version,
            "http": self.http_url,
            "grpc": self.grpc_url,
            "pid": os.getpid(),
            "replicas": [
                {"http": r.server.http_url, "grpc": r.server.grpc_url, "repository": str(r.builder.repository)}
                for r in self.replicas
            ],
        }
        atomic_write_text(self.run_dir / STATE_FILE, json.dumps(state, indent=2))

    def stop(self) -> None:
        self._stop.set()
        if self._prober is not None:
            self._prober.join(timeout=30)
            self._prober = None
        self.nginx.stop()
        for replica in self.replicas:
            replica.server.stop()
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def live_replica_state(run_dir: Path) -> Mapping[str, Any] | None:
    """The state a running replica set wrote, or None when none is running (no file, or its process is gone)."""
    path = Path(run_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def roll_out_to_state(state: Mapping[str, Any], version: ModelVersion, configs: Sequence[TritonModelConfig]) -> int:
    """Deploy `version` to each replica a running set recorded, one after another (from another process: a
    `models promote`). Triton's load is graceful, so each replica keeps answering while it switches. Returns
    the number of replicas updated."""
    for replica in state["replicas"]:
        builder = TritonRepositoryBuilder(Path(replica["repository"]))
        controller = ModelController(replica["http"], builder)
        try:
            for config in configs:
                controller.deploy(version, config)
        finally:
            controller.close()
    return len(state["replicas"])
