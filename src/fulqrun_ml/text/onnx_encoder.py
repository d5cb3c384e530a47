"""The text encoder as an ONNX graph run by onnxruntime: the serving-side twin of the torch backend.

Why export: a serving host (Triton's onnxruntime backend, or any process without torch) can then embed
text at request time. The graph takes `input_ids` and `attention_mask` (dynamic batch and length axes)
and returns `sentence_embedding` (mean pooling over real tokens, then L2 normalisation, both inside the
graph), so the only Python left outside is the Rust `tokenizers` call. Parity with sentence-transformers
is checked at export time (`export_text_encoder` raises ExportParityError beyond the tolerance).

Whether serving runs this graph per request or reads vectors computed at write time is decided by
measurement in scripts/bench_text.py (reports/bench_text.json); see the README.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fulqrun_ml.errors import ExportParityError
from fulqrun_ml.text.model import EMBEDDING_DIM, load_sentence_transformer, model_dir

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
PARITY_TOLERANCE = 1e-4  # max absolute difference per dimension of unit vectors
PARITY_TEXTS = (
    "Budget approved by the CFO, decision expected next quarter.",
    "Champion left the company; competition is Acme with a lower price.",
    "call [NAME] at [PHONE] about the paper process",
    "short",
)


def _wrapper(transformer: object) -> object:
    import torch

    class MeanPooledEncoder(torch.nn.Module):
        """BERT -> mean over attended tokens -> unit length: what sentence-transformers computes."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooledEncoder(transformer).eval()


def load_tokenizer() -> object:
    """The packaged fast tokenizer, truncating at 256 pieces and padding to the longest in the batch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer: object, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """int64 `input_ids` and `attention_mask`, shape (batch, longest)."""
    encodings = tokenizer.encode_batch(list(texts))  # type: ignore[attr-defined]
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def export_text_encoder(path: str | Path, check_parity: bool = True) -> Path:
    """Write the ONNX graph to `path` atomically (a temporary sibling renamed into place) and check it."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = load_sentence_transformer("cpu")
    wrapper = _wrapper(model[0].auto_model)
    example = tokenize(load_tokenizer(), PARITY_TEXTS)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (torch.from_numpy(example["input_ids"]), torch.from_numpy(example["attention_mask"])),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        if check_parity:
            reference = np.asarray(model.encode(list(PARITY_TEXTS), normalize_embeddings=True), dtype=np.float32)
            got = OnnxBackend(tmp).embed(PARITY_TEXTS)
            worst = float(np.abs(reference - got).max())
            if worst > PARITY_TOLERANCE:
                raise ExportParityError(f"ONNX text encoder differs from sentence-transformers by {worst:.2e}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class OnnxBackend:
    """Tokenise with `tokenizers`, embed with onnxruntime; no torch at run time."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = load_tokenizer()

    @classmethod
    def from_path(cls, path: str | Path | None) -> OnnxBackend:
        """Open `path`, exporting it first when absent (default: the user cache directory)."""
        path = Path(path) if path is not None else Path.home() / ".cache" / "fulqrun_ml" / "text_encoder.onnx"
        if not path.exists():
            export_text_encoder(path)
        return cls(path)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        (vectors,) = self.session.run(["sentence_embedding"], tokenize(self.tokenizer, texts))
        return np.asarray(vectors, dtype=np.float32)
