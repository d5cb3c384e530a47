"""Triton Python-backend model `text_encoder`: note text in, its 384-d sentence embedding out.

The Triton side of issue 18's serving choice ("encode per request in Triton" against "embed at write time and
fetch by id"): the all-MiniLM-L6-v2 ONNX export (src/fulqrun_ml/text/onnx_encoder.py, mean pooling and L2
normalisation inside the graph) run by onnxruntime, tokenised by the packaged `tokenizer.json` (truncation at 256
pieces, padding to the longest text of the batch). Written into <repo>/text_encoder/1/ with both files by
`fulqrun_ml.serving.text_encoder_repo`. Runs inside Triton's Python stub: numpy, onnxruntime, tokenizers only.

Input `text` BYTES [batch, 1] (UTF-8), output `embedding` FP32 [batch, 384]. Each request is validated on its
own: text that is not UTF-8, longer than `max_chars` characters, or holds a control character gets an error
naming `text[i]`, while the other requests of the dynamic batch are still answered. PII scrubbing is the
caller's job (text/encoder.py scrubs before encoding): this model sees what it is sent.
"""

import json
import unicodedata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


def invalid(message):
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    error = pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def check_text(raw, field, max_chars):
    """The text, or a message naming the field (the rules of fulqrun_ml.text.validation)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"field '{field}': not valid UTF-8 (byte {err.start}): re-encode as UTF-8"
    if len(text) > max_chars:
        return None, f"field '{field}': too long: {len(text)} characters, at most {max_chars}"
    for position, char in enumerate(text):
        if unicodedata.category(char) == "Cc" and char not in "\n\r\t":
            return None, f"field '{field}': control character U+{ord(char):04X} at character {position}"
    return unicodedata.normalize("NFC", text), None


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("ort_intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(here / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(here / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(params.get("max_tokens", "256")))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.max_chars = int(params.get("max_chars", "4000"))

    def execute(self, requests):
        responses = [None] * len(requests)
        texts, owners = [], []
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, "text")
            raw = tensor.as_numpy().ravel() if tensor is not None else np.array([], dtype=object)
            checked = [check_text(v if isinstance(v, bytes) else str(v).encode(), f"text[{j}]", self.max_chars)
                       for j, v in enumerate(raw)]  # fmt: skip
            errors = [message for _, message in checked if message]
            if errors:
                responses[i] = invalid(errors[0])
                continue
            texts += [text for text, _ in checked]
            owners.append((i, len(checked)))
        if texts:
            encodings = self.tokenizer.encode_batch(texts)
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            }
            (vectors,) = self.session.run(["sentence_embedding"], feeds)
            start = 0
            for i, n in owners:
                part = np.ascontiguousarray(vectors[start : start + n], dtype=np.float32)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("embedding", part)])
                start += n
        return responses
