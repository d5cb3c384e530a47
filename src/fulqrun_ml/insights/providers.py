"""LLM providers behind one small interface, on the official SDKs (openai, anthropic).

Why the SDKs and not raw HTTP: they carry the providers' retry policy (exponential backoff on 408/409/429/
5xx and connection errors), timeouts, and response parsing; we configure them (`timeout`, `max_retries`,
`base_url`) rather than re-implementing them. Tests point `base_url` at a local fake server, so the real
client code runs and nothing reaches the network.

Keys come from the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY) and are never logged or cached. A
provider returns the text and the token counts the API reported (for the cost log). No sampling
temperature is sent (current models of both APIs reject or ignore it); repeatability comes from the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from fulqrun_ml.errors import FulqrunMLError


class LLMError(FulqrunMLError):
    """The provider could not be reached, timed out after its retries, or answered with an error."""


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ProviderConfig:
    """Which model, where (base_url: None = the provider's API), how long to wait, how often to retry."""

    provider: str
    model: str
    base_url: str | None = None
    timeout_s: float = 20.0
    max_retries: int = 2
    max_tokens: int = 400
    api_key_env: str | None = None


class LLMProvider(Protocol):
    name: str
    model: str

    def complete(self, system: str, prompt: str) -> Completion: ...


def _api_key(config: ProviderConfig, default_env: str) -> str:
    env = config.api_key_env or default_env
    key = os.environ.get(env)
    if not key:
        raise LLMError(f"{env} is not set: the {config.provider} provider needs an API key (or use provider: offline)")
    return key


class OpenAIProvider:
    """Chat completions through the `openai` SDK."""

    name = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        import openai

        self._errors = (openai.APIError, openai.APITimeoutError, openai.APIConnectionError)
        self.model = config.model
        self.max_tokens = config.max_tokens
        self.client = openai.OpenAI(
            api_key=_api_key(config, "OPENAI_API_KEY"),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )

    def complete(self, system: str, prompt: str) -> Completion:
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                max_completion_tokens=self.max_tokens,
            )
        except self._errors as err:
            raise LLMError(f"openai request failed: {type(err).__name__}") from err
        usage = response.usage
        return Completion(
            text=response.choices[0].message.content or "",
            input_tokens=int(usage.prompt_tokens) if usage else 0,
            output_tokens=int(usage.completion_tokens) if usage else 0,
        )


class AnthropicProvider:
    """Messages through the `anthropic` SDK."""

    name = "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        import anthropic

        self._errors = (anthropic.APIError, anthropic.APITimeoutError, anthropic.APIConnectionError)
        self.model = config.model
        self.max_tokens = config.max_tokens
        self.client = anthropic.Anthropic(
            api_key=_api_key(config, "ANTHROPIC_API_KEY"),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )

    def complete(self, system: str, prompt: str) -> Completion:
        try:
            response = self.client.messages.create(
                model=self.model,
                system=system,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.max_tokens,
            )
        except self._errors as err:
            raise LLMError(f"anthropic request failed: {type(err).__name__}") from err
        text = "".join(getattr(block, "text", "") for block in response.content)
        return Completion(text, int(response.usage.input_tokens), int(response.usage.output_tokens))


def make_provider(config: ProviderConfig) -> LLMProvider:
    if config.provider == "openai":
        return OpenAIProvider(config)
    if config.provider == "anthropic":
        return AnthropicProvider(config)
    raise LLMError(f"provider must be openai or anthropic (or offline for the writer), got {config.provider!r}")
