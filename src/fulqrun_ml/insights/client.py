"""The guarded LLM call: PII scan -> cache -> provider (timeouts, retries) -> cost/token log.

Every request passes `PIIGuard.check` before the cache or the network sees it, so a refused prompt is
neither sent nor cached. The cache is keyed by the SHA-256 of (provider, model, system, prompt): the same
facts asked again cost nothing and give the same words (reproducible narratives). The cost log is one JSON
line per call with the provider, model, token counts, estimated cost, latency, cache hit and status, and
only a prefix of the prompt's hash: no prompt text, no response text, no key, so it is safe to ship to
monitoring.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from fulqrun_ml.insights.pii_guard import PIIGuard, PIILeakError
from fulqrun_ml.insights.providers import Completion, LLMError, LLMProvider
from fulqrun_ml.registry.locking import atomic_write_json


class GuardedLLMClient:
    """`complete(kind, system, prompt)` through the guard, the cache and the provider, logging each call."""

    def __init__(
        self,
        provider: LLMProvider,
        guard: PIIGuard,
        cache_dir: str | Path | None = None,
        log_path: str | Path | None = None,
        prices_per_million: Mapping[str, float] | None = None,
    ) -> None:
        self.provider = provider
        self.guard = guard
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.log_path = Path(log_path) if log_path is not None else None
        self.prices = dict(prices_per_million or {})

    def _key(self, system: str, prompt: str) -> str:
        material = "\x00".join((self.provider.name, self.provider.model, system, prompt))
        return hashlib.sha256(material.encode()).hexdigest()

    def complete(self, kind: str, system: str, prompt: str) -> Completion:
        key = self._key(system, prompt)
        start = time.perf_counter()
        try:
            self.guard.check(system, prompt)
        except PIILeakError:
            self._log(kind, key, None, start, cached=False, status="refused_pii")
            raise
        cached = self._cached(key)
        if cached is not None:
            self._log(kind, key, cached, start, cached=True, status="ok")
            return cached
        try:
            completion = self.provider.complete(system, prompt)
        except LLMError:
            self._log(kind, key, None, start, cached=False, status="error")
            raise
        if self.cache_dir is not None:
            atomic_write_json(self.cache_dir / f"{key}.json", asdict(completion))
        self._log(kind, key, completion, start, cached=False, status="ok")
        return completion

    def _cached(self, key: str) -> Completion | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.json"
        try:
            return Completion(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def cost_usd(self, completion: Completion) -> float:
        """Estimated from the configured prices (USD per million input / output tokens)."""
        return (
            completion.input_tokens * self.prices.get("input", 0.0)
            + completion.output_tokens * self.prices.get("output", 0.0)
        ) / 1e6

    def _log(self, kind: str, key: str, completion: Completion | None, start: float, cached: bool, status: str) -> None:
        if self.log_path is None:
            return
        record = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "provider": self.provider.name,
            "model": self.provider.model,
            "kind": kind,
            "prompt_sha256_prefix": key[:16],
            "input_tokens": completion.input_tokens if completion and not cached else 0,
            "output_tokens": completion.output_tokens if completion and not cached else 0,
            "cost_usd": round(self.cost_usd(completion), 6) if completion and not cached else 0.0,
            "latency_ms": round((time.perf_counter() - start) * 1000, 1),
            "cached": cached,
            "status": status,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
