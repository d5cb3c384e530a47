"""Change what a running Triton serves, without dropping requests: deploy, roll back, split traffic.

The server runs in explicit model-control mode. To change versions we rewrite the model's directory in
the repository (atomically, see TritonRepositoryBuilder) and ask Triton to load the model again. Triton
loads the new version(s) first, switches new requests to them, and unloads the old version only after
its in-flight requests finish — so a rollback is a pointer change plus a reload, with no failed calls.

An A/B split serves two versions side by side (version_policy: specific); `TrafficSplitter` routes each
request to one of them by weight, and Triton's own statistics give per-version counts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import ServingError
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.access import KeyedHTTPClient
from fulqrun_ml.serving.access import control_key as default_control_key
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import Prediction, Records
from fulqrun_ml.serving.integrity import verify_repository
from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder


class ModelController:
    """Deploys registry versions into a live server's repository (explicit model control)."""

    def __init__(self, http_url: str, builder: TritonRepositoryBuilder, control_key: str | None = None) -> None:
        # Every call carries the control key: the server restricts the repository API (serving/access.py).
        self.client = KeyedHTTPClient(http_url, control_key or default_control_key(builder.repository))
        self.builder = builder

    def deploy(self, versions: ModelVersion | Sequence[ModelVersion], config: TritonModelConfig) -> list[int]:
        """Serve exactly `versions` under `config.name`; returns the versions now ready."""
        versions = [versions] if isinstance(versions, ModelVersion) else list(versions)
        wanted = tuple(v.version for v in versions)
        self.builder.add(versions, replace(config, served_versions=wanted))
        verify_repository(self.builder.repository, [config.name])
        try:
            self.client.load_model(config.name)
        except InferenceServerException as exc:
            raise ServingError(
                f"Triton could not load {config.name} versions {list(wanted)}: {exc.message()}"
            ) from None
        self.wait_ready(config.name, wanted)
        return list(wanted)

    def wait_ready(self, name: str, versions: Sequence[int], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.client.is_model_ready(name, str(v)) for v in versions):
                return
            time.sleep(0.1)
        raise ServingError(f"{name} versions {list(versions)} not ready after {timeout_s:.0f}s")

    def served_versions(self, name: str) -> list[int]:
        index = self.client.get_model_repository_index()
        return sorted(int(m["version"]) for m in index if m.get("name") == name and m.get("state") == "READY")

    def request_counts(self, name: str) -> dict[int, int]:
        """Successful inferences per version since load, from Triton's statistics API."""
        stats = self.client.get_inference_statistics(name)
        return {
            int(s["version"]): int(s["inference_stats"]["success"]["count"])
            for s in stats["model_stats"]
            if s.get("version")
        }

    def close(self) -> None:
        self.client.close()


@dataclass
class TrafficSplitter:
    """Routes each call to one served version by weight (e.g. {"3": 0.9, "4": 0.1}), seeded for replay."""

    client: TritonPredictionClient
    weights: Mapping[str, float]
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.weights or any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError(f"traffic weights must be non-negative and sum to > 0, got {dict(self.weights)}")
        self._rng = random.Random(self.seed)
        self._versions = list(self.weights)
        self._cum = [w for w in self.weights.values()]
        self.sent: dict[str, int] = dict.fromkeys(self._versions, 0)

    def choose(self) -> str:
        return self._rng.choices(self._versions, weights=self._cum, k=1)[0]

    def predict_detailed(self, records: Records) -> list[Prediction]:
        version = self.choose()
        self.sent[version] += 1
        return self.client.predict_detailed(records, model_version=version)
