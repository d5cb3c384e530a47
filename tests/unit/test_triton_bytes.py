"""serving/triton_bytes.py must return exactly what Triton's own BYTES deserializer returns.

Why: the python-ort backend installs it in place of `triton_python_backend_utils.deserialize_bytes_tensor`, so the
stub builds every categorical input with it; a difference would silently change what the model scores. The
reference is the utils file shipped with the bundled Triton (nvidia-pytriton), on the same serialized buffers the
stub hands over (a uint8 numpy view of shared memory).
"""

from __future__ import annotations

import importlib.util
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fulqrun_ml.project import TEMPLATE_DIR
from fulqrun_ml.serving.server import _pytriton_paths


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def modules() -> tuple[types.ModuleType, types.ModuleType]:
    _, root, _ = _pytriton_paths()
    triton = _load(root / "backends" / "python" / "triton_python_backend_utils.py", "triton_utils_reference")
    return triton, _load(TEMPLATE_DIR / "triton_bytes.py", "triton_bytes_under_test")


CASES = {
    "categoricals": [b"Discovery", b"Proposal", b"EMEA", b"Mid-Market", b"Germany"] * 40,
    "empty and NUL": [b"", b"\x00", b"a\x00", b"", b"\x00\x00b"],
    "invalid utf-8": [b"\xff\xfe", "caf\u00e9".encode(), b"\xc3", "\u4f60\u597d".encode()],
    "long": [bytes(range(256)) * 40, b"x"],
    "none": [],
}


@pytest.mark.parametrize("case", CASES)
def test_same_array_as_tritons_deserializer(modules, case):
    triton, fast = modules
    values = np.array(CASES[case], dtype=object)
    serialized = triton.serialize_byte_tensor(values)
    buffer = np.frombuffer(bytes(serialized), dtype=np.uint8)  # what the stub passes: uint8 view of shm
    expected = triton.deserialize_bytes_tensor(buffer)
    got = fast.deserialize_bytes_tensor(buffer)
    assert got.dtype == expected.dtype == np.object_
    assert got.shape == expected.shape
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert got.tolist() == expected.tolist() == list(CASES[case])
    assert fast.deserialize_bytes_tensor(bytes(serialized)).tolist() == expected.tolist()  # bytes input too


def test_truncated_buffer_is_refused(modules):
    _, fast = modules
    whole = struct.pack("<I", 5) + b"abc"
    with pytest.raises(struct.error):
        fast.deserialize_bytes_tensor(np.frombuffer(whole, dtype=np.uint8))
    with pytest.raises(struct.error):
        fast.deserialize_bytes_tensor(np.frombuffer(b"\x01\x00", dtype=np.uint8))


def test_install_replaces_the_stub_function_once(modules):
    triton, fast = modules
    utils = types.SimpleNamespace(deserialize_bytes_tensor=triton.deserialize_bytes_tensor)
    assert fast.install(utils) is triton.deserialize_bytes_tensor
    assert utils.deserialize_bytes_tensor is fast.deserialize_bytes_tensor
    assert fast.install(utils) is fast.deserialize_bytes_tensor  # idempotent: a second instance's initialize
    assert "triton_python_backend_utils" not in sys.modules  # the test never touched a real stub module
