"""Serving from the object-store registry (registry/object_store.py): hosts that share no disk.

Two ways a Triton host gets its models from S3-compatible storage:

1. Triton reads the repository itself: `tritonserver --model-repository=s3://http://host:port/bucket/path`
   (checked with the CPU tritonserver bundled in nvidia-pytriton 0.7: its core has the S3 filesystem, endpoint
   in the URL, credentials from AWS_* variables). `push_triton_repository` publishes a version's repository
   manifest-last, and `ObjectStoreTritonServer` starts Triton on the complete tree's URL. Good for a fixed
   version at start (a Kubernetes pod).
2. `PromotionWatcher` polls the registry's `production` pointer; when it moves, the host downloads that version
   into its own local registry (sha256 checked against the manifest, renamed into place) and a callback
   deploys it (explicit model control: Triton loads the new version before it retires the old, no failed
   request). This is how long-running replicas pick up a promotion with no shared disk.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fulqrun_ml.errors import ServingError
from fulqrun_ml.registry.object_store import ObjectRegistry
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer

log = logging.getLogger(__name__)


def push_triton_repository(
    registry: ObjectRegistry, version: ModelVersion, configs: Sequence[TritonModelConfig], variant: str = "cpu"
) -> str:
    """Build the Triton repository of `version` (these configs) and publish it manifest-last under `variant`
    ("cpu": Python backend, this project's hosts; "gpu": the NGC container's); returns the s3:// URL of the
    complete tree. Publishing other configs under the same variant and version is refused (immutable)."""
    with tempfile.TemporaryDirectory(prefix="fulqrun-triton-push-") as tmp:
        builder = TritonRepositoryBuilder(Path(tmp) / "repo")
        for config in configs:
            builder.add(version, config)
        (builder.repository / ".control_key").unlink(missing_ok=True)  # a secret: never uploaded
        registry.push_tree(builder.repository, registry.triton_base(version.name, version.version, variant))
    return registry.tree_url(registry.triton_base(version.name, version.version, variant))


def triton_s3_url(tree_url: str, endpoint_url: str | None) -> str:
    """Triton's spelling of an S3 location: `s3://http://host:port/bucket/path` for a custom endpoint (MinIO,
    moto, Supabase), plain `s3://bucket/path` on AWS."""
    if not endpoint_url:
        return tree_url
    endpoint = urlparse(endpoint_url)
    if not endpoint.hostname or not endpoint.port:
        raise ServingError(f"S3 endpoint must be scheme://host:port for Triton, got {endpoint_url!r}")
    return f"s3://{endpoint.scheme}://{endpoint.hostname}:{endpoint.port}/{tree_url[len('s3://') :]}"


class ObjectStoreTritonServer(TritonServer):
    """A TritonServer that serves an s3:// repository (Triton downloads it at load time) next to an optional local
    one. Only the local repository is verified here; the s3:// tree's integrity is its manifest's, checked when
    it was published, and its bucket's access control."""

    def __init__(
        self, s3_url: str, explicit_models: list[str], local_repository: Path | None = None, **kwargs: Any
    ) -> None:
        local = local_repository or Path(tempfile.mkdtemp(prefix="fulqrun-s3-repo-"))  # none: an empty one
        super().__init__(local, explicit_models=explicit_models, **kwargs)
        self.s3_url = s3_url

    def command(self) -> list[str]:
        command = super().command()
        at = command.index(f"--model-repository={self.model_repository}")
        return [*command[: at + 1], f"--model-repository={self.s3_url}", *command[at + 1 :]]


class PromotionWatcher:
    """Polls `<registry>/<name>/aliases/production.json`; on a change, pulls the version into `models_dir` and
    calls `deploy(version)`. Runs in a daemon thread; `check()` does one poll (tests, a cron job)."""

    def __init__(
        self,
        registry: ObjectRegistry,
        name: str,
        models_dir: Path,
        deploy: Callable[[ModelVersion], None],
        interval_s: float = 2.0,
        alias: str = "production",
        current: int | None = None,
    ) -> None:
        """`current`: the version this host already serves (no redeploy of it at the first poll)."""
        self.registry = registry
        self.name = name
        self.models_dir = Path(models_dir)
        self.deploy = deploy
        self.interval_s = interval_s
        self.alias = alias
        self.current = current
        self.errors: list[str] = []  # the last failures, for a health endpoint or the log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> int | None:
        """One poll: deploy the aliased version if it changed; returns the version now deployed."""
        wanted = self.registry.resolve(self.name, self.alias)
        if wanted is not None and wanted != self.current:
            version = self.registry.pull_version(self.name, wanted, self.models_dir)
            self.deploy(version)
            log.info("%s: now serving %s v%d from %s", self.alias, self.name, wanted, self.registry.url)
            self.current = wanted
        return self.current

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # keep serving the current version; retry at the next poll
                self.errors = [*self.errors[-9:], str(exc)]
                log.warning("promotion watcher: %s", exc)

    def start(self) -> PromotionWatcher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
