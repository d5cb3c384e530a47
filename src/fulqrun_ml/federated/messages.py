"""The federated wire format, and the schema that keeps rows from crossing it.

Why a schema of our own: the only thing an organisation may send the server is aggregate information, namely
weight deltas of the shared network, a few counts and scalar metrics, and the sufficient statistics of the
FeatureSpec. Pickle (what `multiprocessing` would use by default) would let a message carry anything, and unpickling
a peer's bytes runs its code. So a message is `[4-byte header length][JSON header][.npz of named float arrays]`. It
is read with `np.load(allow_pickle=False)`, and `decode` checks it against one schema per message type:

- the header holds exactly the keys its type allows, each a scalar of the expected type (a list of values is
  refused, so a column of rows cannot ride in a header field);
- tensors are allowed only in `update`/`masked_update` (server-bound) and `weights` (client-bound) messages, as
  float32 (uint64 fixed-point residues for `masked_update`, secure_agg.py). Their names must be
  exactly the model's floating-point state_dict entries, with the reference shapes. A tensor with one more name,
  one name missing or another shape is refused by name, before the server reads its values.

`update` messages are then checked for NaN/inf (`aggregate.check_update`); a refusal names the client and the
tensor, and the round goes on without that update.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fulqrun_ml.errors import FulqrunMLError

# Server-bound: hello, stats (FeatureSpec sufficient statistics), update (weight delta), metrics, failed;
# with secure aggregation public_key (X25519, hex) and masked_update (the delta, fixed-point and masked).
# Client-bound: spec (the fitted FeatureSpec), weights (global state for a round or an evaluation; `roster` is the
# comma-joined ids to mask against, empty without secure aggregation; `clip_norm` > 0 asks for client-level DP
# clipping), key_request and peer_keys (the relayed public keys), stop.
HEADER_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "hello": {"client_id": str},
    "stats": {"client_id": str, "n_rows": int, "numeric": dict, "categories": dict},
    "update": {"client_id": str, "round": int, "n_examples": int, "val_log_loss": float, "n_val": int},
    "masked_update": {"client_id": str, "round": int, "n_examples": int, "val_log_loss": float, "n_val": int},
    "public_key": {"client_id": str, "public_key": str},
    "metrics": {"client_id": str, "metrics": dict},
    "failed": {"client_id": str, "error": str},
    "spec": {"spec": dict},
    "weights": {"round": int, "purpose": str, "mu": float, "local_epochs": int, "clip_norm": float, "roster": str},
    "key_request": {},
    "peer_keys": {"keys": dict},
    "stop": {},
}
# Tensor dtypes per message type: masked updates are fixed-point residues mod 2**64 (secure_agg.py).
TENSOR_TYPES = {"update": np.float32, "weights": np.float32, "masked_update": np.uint64}
NUMERIC_STATS = ("count", "mean", "m2")
# Per-split metrics a client may report about the global model on its own holdout (scalars only).
METRIC_NAMES = frozenset({"auc", "log_loss", "brier", "n", "positives", "oracle_auc", "oracle_log_loss", "base_rate"})
METRIC_SPLITS = ("val", "test")


class FederatedError(FulqrunMLError):
    """A federation could not run (no clients left, a client's data failed, the server could not start)."""


class MessageRejected(FulqrunMLError):
    """A peer's message breaks the schema or holds unusable values; names the client and the tensor or key."""

    def __init__(self, client_id: str, what: str, reason: str) -> None:
        super().__init__(f"client '{client_id}': {what}: {reason}")
        self.client_id = client_id
        self.what = what
        self.reason = reason


@dataclass(frozen=True)
class Message:
    type: str
    header: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def encode(kind: str, header: Mapping[str, Any], tensors: Mapping[str, np.ndarray] | None = None) -> bytes:
    """One message as bytes: header JSON and, for the TENSOR_TYPES, arrays of their dtype in an .npz (no pickle)."""
    head = json.dumps({"type": kind, **header}, sort_keys=True).encode()
    body = b""
    if tensors:
        buffer = io.BytesIO()
        dtype = TENSOR_TYPES.get(kind, np.float32)
        np.savez(buffer, **{name: np.asarray(value, dtype=dtype) for name, value in tensors.items()})
        body = buffer.getvalue()
    return struct.pack(">I", len(head)) + head + body


def decode(data: bytes, sender: str = "?", shapes: Mapping[str, tuple[int, ...]] | None = None) -> Message:
    """Parse and check a message against its type's schema; `shapes` are the state_dict entries tensors must match.

    Raises MessageRejected naming `sender` (or the header's client_id) and what broke."""
    if len(data) < 4:
        raise MessageRejected(sender, "message", "shorter than its length prefix")
    (size,) = struct.unpack(">I", data[:4])
    try:
        header = json.loads(data[4 : 4 + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MessageRejected(sender, "header", f"not JSON ({error})") from None
    if not isinstance(header, dict) or header.get("type") not in HEADER_KEYS:
        raise MessageRejected(sender, "header", f"unknown message type {header.get('type')!r}")
    kind = header.pop("type")
    who = str(header.get("client_id", sender))
    check_header(who, kind, header)
    body = data[4 + size :]
    tensors: dict[str, np.ndarray] = {}
    if body:
        if kind not in TENSOR_TYPES:
            raise MessageRejected(who, kind, "carries tensors, which this message type may not")
        tensors = read_tensors(who, body)
    if kind in TENSOR_TYPES:
        check_tensor_names(who, tensors, shapes, TENSOR_TYPES[kind])
    return Message(kind, header, tensors)


def check_header(who: str, kind: str, header: dict[str, Any]) -> None:
    """Exactly the allowed keys, each of its type; stats and metrics hold scalars only."""
    allowed = HEADER_KEYS[kind]
    extra = sorted(set(header) - set(allowed))
    missing = sorted(set(allowed) - set(header))
    if extra or missing:
        raise MessageRejected(
            who,
            kind,
            f"header keys {'unexpected ' + str(extra) if extra else ''}"
            f"{' missing ' + str(missing) if missing else ''}".strip(),
        )
    for key, expected in allowed.items():
        value = header[key]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue  # JSON writes 1.0 as 1
        if not isinstance(value, expected) or isinstance(value, bool):
            raise MessageRejected(who, f"{kind}.{key}", f"expected {expected}, got {type(value).__name__}")
    if kind == "stats":
        for name, stats in header["numeric"].items():
            if not isinstance(stats, dict) or sorted(stats) != sorted(NUMERIC_STATS):
                raise MessageRejected(who, f"stats.numeric.{name}", f"must hold exactly {list(NUMERIC_STATS)}")
            _scalars(who, f"stats.numeric.{name}", stats)
        for name, counts in header["categories"].items():
            if not isinstance(counts, dict):
                raise MessageRejected(who, f"stats.categories.{name}", "must map category -> count")
            _scalars(who, f"stats.categories.{name}", counts, integer=True)
    if kind == "peer_keys":
        for peer, key in header["keys"].items():
            _public_key(who, f"peer_keys.{peer}", key)
    if kind == "public_key":
        _public_key(who, "public_key", header["public_key"])
    if kind == "metrics":
        for split, values in header["metrics"].items():
            if split not in METRIC_SPLITS or not isinstance(values, dict):
                raise MessageRejected(who, f"metrics.{split}", f"splits are {list(METRIC_SPLITS)}")
            unknown = sorted(set(values) - METRIC_NAMES)
            if unknown:
                raise MessageRejected(who, f"metrics.{split}", f"unknown metrics {unknown}")
            _scalars(who, f"metrics.{split}", values, allow_none=True)


def _public_key(who: str, where: str, key: Any) -> None:
    if not isinstance(key, str) or len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise MessageRejected(who, where, "must be a 32-byte X25519 public key in lower-case hex")


def _scalars(who: str, where: str, values: dict[str, Any], integer: bool = False, allow_none: bool = False) -> None:
    for key, value in values.items():
        if value is None and allow_none:
            continue
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if not ok or isinstance(value, bool):
            raise MessageRejected(who, f"{where}.{key}", f"must be a number, got {type(value).__name__}")


def read_tensors(who: str, body: bytes) -> dict[str, np.ndarray]:
    """The .npz body, read without pickle: object arrays are refused by numpy itself."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as error:
        raise MessageRejected(who, "tensors", f"not a plain .npz of numbers ({error})") from None


def check_tensor_names(
    who: str,
    tensors: Mapping[str, np.ndarray],
    shapes: Mapping[str, tuple[int, ...]] | None,
    dtype: type = np.float32,
) -> None:
    """Tensor names are exactly the model's parameters, with their shapes and dtype: nothing else crosses."""
    if shapes is None:
        raise MessageRejected(who, "tensors", "no reference shapes to check them against")
    extra = sorted(set(tensors) - set(shapes))
    if extra:
        raise MessageRejected(who, f"tensor '{extra[0]}'", "is not a parameter of the shared model")
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise MessageRejected(who, f"tensor '{missing[0]}'", "is missing from the update")
    for name, value in tensors.items():
        if value.dtype != dtype:
            raise MessageRejected(who, f"tensor '{name}'", f"dtype {value.dtype}, expected {np.dtype(dtype).name}")
        if tuple(value.shape) != tuple(shapes[name]):
            raise MessageRejected(
                who, f"tensor '{name}'", f"shape {tuple(value.shape)}, expected {tuple(shapes[name])}"
            )
