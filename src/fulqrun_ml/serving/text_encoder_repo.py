"""A Triton model repository entry for the text encoder: `text_encoder` (note text in, 384-d embedding out).

Why it exists: issue 18 asks to choose between encoding note text per request in Triton and embedding it at write
time (fetching the vector by id), by measurement. `scripts/bench_text.py` serves this model in a real Triton next
to the other designs, so the choice rests on the served path, Triton's own overhead included. The backend is the
template serving/python_text_encoder/model.py (onnxruntime + the packaged tokenizer, no torch), fed the ONNX
export of `text/onnx_encoder.py` (parity with sentence-transformers checked at export).

The directory is assembled beside the target and renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from fulqrun_ml.project import TEMPLATE_DIR
from fulqrun_ml.text.model import EMBEDDING_DIM, model_dir
from fulqrun_ml.text.onnx_encoder import MAX_TOKENS
from fulqrun_ml.text.validation import MAX_TEXT_CHARS

MODEL_NAME = "text_encoder"
TEMPLATE = "python_text_encoder"


def text_encoder_config(name: str = MODEL_NAME, max_batch_size: int = 64, instances: int = 1) -> str:
    """config.pbtxt: BYTES `text` [1] -> FP32 `embedding` [384], dynamic batching, CPU instances."""
    return f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "text" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "embedding" data_type: TYPE_FP32 dims: [ {EMBEDDING_DIM} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 200 }}
instance_group [ {{ count: {instances} kind: KIND_CPU }} ]
parameters {{ key: "ort_intra_op_threads" value: {{ string_value: "1" }} }}
parameters {{ key: "max_tokens" value: {{ string_value: "{MAX_TOKENS}" }} }}
parameters {{ key: "max_chars" value: {{ string_value: "{MAX_TEXT_CHARS}" }} }}
"""


def write_text_encoder_model(repository: str | Path, onnx_path: str | Path, name: str = MODEL_NAME) -> Path:
    """<repository>/<name>/{config.pbtxt, 1/model.py, 1/model.onnx, 1/tokenizer.json}; returns the model dir."""
    repository = Path(repository)
    repository.mkdir(parents=True, exist_ok=True)
    target = repository / name
    tmp = repository / f".{name}.tmp-{uuid.uuid4().hex}"
    try:
        version = tmp / "1"
        version.mkdir(parents=True)
        (tmp / "config.pbtxt").write_text(text_encoder_config(name))
        shutil.copy2(TEMPLATE_DIR / TEMPLATE / "model.py", version / "model.py")
        shutil.copy2(onnx_path, version / "model.onnx")
        shutil.copy2(model_dir() / "tokenizer.json", version / "tokenizer.json")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
