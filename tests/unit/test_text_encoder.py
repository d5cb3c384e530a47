"""Text encoder: packaged weights offline, PII scrubbed before embedding, cache per text hash, field errors,
and ONNX parity with sentence-transformers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.text.cache import EmbeddingCache, text_key
from fulqrun_ml.text.encoder import EMBEDDING_DIM, MODEL_TAG, TextEncoder, TorchBackend
from fulqrun_ml.text.validation import validate_text

pytest.importorskip("sentence_transformers")


class RecordingBackend:
    """Wraps the real backend and records what the model saw (to prove PII never reaches it)."""

    def __init__(self) -> None:
        self.inner = TorchBackend()
        self.seen: list[str] = []

    def embed(self, texts):
        self.seen.extend(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def backend() -> RecordingBackend:
    return RecordingBackend()


def test_offline_and_semantic(backend: RecordingBackend) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    vectors = TextEncoder(backend).encode(
        ["The CFO approved the budget.", "Finance signed off on the spending.", "The printer is out of toner."]
    )
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated + 0.2


def test_pii_is_scrubbed_before_the_model_sees_it(backend: RecordingBackend) -> None:
    backend.seen.clear()
    encoder = TextEncoder(backend, known_names=["Ivan Silva"])
    vectors = encoder.encode(["Ivan Silva (ivan.silva@acme.com, +1 555 010 0199) is our champion"])
    assert backend.seen == ["[NAME] ([EMAIL], [PHONE]) is our champion"]
    # Two notes that differ only in who is named embed identically: the vector carries no identity.
    other = encoder.encode(["Maria Gomez (m.gomez@beta.io, +44 20 7946 0958) is our champion"])
    np.testing.assert_array_equal(vectors, other)


def test_cache_per_text_hash(backend: RecordingBackend, tmp_path: Path) -> None:
    encoder = TextEncoder(backend, cache_dir=tmp_path)
    first = encoder.encode(["pricing approved", "legal review pending", "pricing approved"])
    assert encoder.encoded == 2  # the duplicate is encoded once
    again = TextEncoder(backend, cache_dir=tmp_path)
    second = again.encode(["legal review pending", "pricing approved"])
    assert again.encoded == 0
    np.testing.assert_array_equal(second, first[[1, 0]])
    # Keys are hashes of scrubbed text: no file name or content reveals the raw text.
    cache = EmbeddingCache(tmp_path, MODEL_TAG, EMBEDDING_DIM)
    assert len(cache) == 2 and cache.get(text_key("pricing approved", MODEL_TAG)) is not None
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_damaged_cache_entry_is_recomputed(backend: RecordingBackend, tmp_path: Path) -> None:
    encoder = TextEncoder(backend, cache_dir=tmp_path)
    reference = encoder.encode(["renewal at risk"])
    (path,) = tmp_path.rglob("*.npy")
    path.write_bytes(b"half a file")
    again = TextEncoder(backend, cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(["renewal at risk"]), reference, atol=1e-6)
    assert again.encoded == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (42, "must be a string, got int"),
        (None, "must be a string, got NoneType"),
        ("x" * 4001, "too long: 4001 characters"),
        ("caf\xe9".encode("latin-1"), "not valid UTF-8"),
        ("bad \ud800 surrogate", "wrong encoding"),
        ("nul\x00byte", r"control character U\+0000"),
    ],
)
def test_bad_text_gets_a_field_error(value: object, reason: str) -> None:
    with pytest.raises(FieldValidationError, match=reason) as err:
        validate_text(value, "notes")
    assert err.value.field == "notes"


def test_encoder_names_the_bad_item(backend: RecordingBackend) -> None:
    with pytest.raises(FieldValidationError) as err:
        TextEncoder(backend).encode(["fine", b"\xff\xfe"], field="notes")
    assert err.value.field == "notes[1]"
    assert validate_text("caf\xe9".encode()) == "caf\xe9"


def test_onnx_export_matches_sentence_transformers(backend: RecordingBackend, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from fulqrun_ml.text.onnx_encoder import OnnxBackend, export_text_encoder

    path = export_text_encoder(tmp_path / "encoder.onnx")
    texts = ["a", "the customer asked for a discount " * 60, "Budget approved; decision next quarter."]
    onnx = OnnxBackend(path)
    for batch in ([texts[0]], [texts[1]], texts):
        np.testing.assert_allclose(onnx.embed(batch), backend.inner.embed(batch), atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["encoder.onnx"]
