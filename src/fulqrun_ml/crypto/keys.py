"""Where signing and encryption keys come from: a small KMS-style interface over the environment or a key file.

Why an interface: the platform signs registry versions (registry/signing.py) and encrypts model files and
snapshots at rest (crypto/envelope.py) with keys it must never hold in configs, logs or W&B. A `KeyProvider`
answers two questions, "which key do I use now?" (`current`) and "give me key <id>" (`key`), which is all a
cloud KMS data-key API would answer too, so a real KMS can replace these two providers without touching their
callers.

Rotation: a keyring lists several keys; the first (environment) or `current` (file) is used for new work, the
others still verify/decrypt until they are removed ("retired"). Key ids travel with what they signed or
encrypted, never the key.

- `EnvKeyProvider("FULQRUN_ENCRYPTION_KEYS")`: `<id>:<base64 key>[,<id>:<base64 key>...]`, current first.
- `FileKeyProvider(path)`: JSON `{"current": "<id>", "keys": {"<id>": "<base64 key>", ...}}`; refused when the
  file is readable by group or others, as ssh refuses a private key with loose permissions.

Errors name the variable, file or key id and never include key material.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol

from fulqrun_ml.errors import FulqrunMLError

SIGNING_KEYS_ENV = "FULQRUN_SIGNING_KEYS"
ENCRYPTION_KEYS_ENV = "FULQRUN_ENCRYPTION_KEYS"
MIN_KEY_BYTES = 32  # AES-256 and HMAC-SHA256 both want 256-bit keys


class KeyMaterialError(FulqrunMLError):
    """A key is missing, retired, malformed, or stored insecurely. The message never holds key material."""


class KeyProvider(Protocol):
    def current(self) -> tuple[str, bytes]:
        """(key id, key) to use for new signatures or encryptions."""

    def key(self, key_id: str) -> bytes:
        """The key with this id; KeyMaterialError when it is unknown or retired."""


def new_key() -> str:
    """A fresh random 256-bit key, base64-encoded, for a keyring entry."""
    return base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode()


def _decode(key_id: str, encoded: str, where: str) -> bytes:
    if not key_id or not key_id.replace("-", "").replace("_", "").isalnum():
        raise KeyMaterialError(f"{where}: key id {key_id!r} must be letters, digits, '-' or '_'")
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{where}: key '{key_id}' is not valid base64") from None
    if len(raw) < MIN_KEY_BYTES:
        raise KeyMaterialError(f"{where}: key '{key_id}' has {len(raw)} bytes, at least {MIN_KEY_BYTES} are required")
    return raw


class _Keyring:
    def __init__(self, keys: dict[str, bytes], current_id: str, where: str) -> None:
        if current_id not in keys:
            raise KeyMaterialError(f"{where}: current key '{current_id}' is not in the keyring")
        self._keys, self._current, self.where = keys, current_id, where

    def current(self) -> tuple[str, bytes]:
        return self._current, self._keys[self._current]

    def key(self, key_id: str) -> bytes:
        if key_id not in self._keys:
            raise KeyMaterialError(f"key '{key_id}' is not in {self.where} (unknown or retired)")
        return self._keys[key_id]

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)


class EnvKeyProvider(_Keyring):
    """Keys from one environment variable, `<id>:<base64>,...`; the first is current."""

    def __init__(self, variable: str) -> None:
        value = os.environ.get(variable, "").strip()
        if not value:
            raise KeyMaterialError(f"no keys: set {variable} to '<id>:<base64 key>[,<id>:<base64 key>...]'")
        keys: dict[str, bytes] = {}
        for entry in value.split(","):
            key_id, sep, encoded = entry.strip().partition(":")
            if not sep:
                raise KeyMaterialError(f"${variable}: each entry must be '<id>:<base64 key>'")
            keys[key_id] = _decode(key_id, encoded, f"${variable}")
        super().__init__(keys, next(iter(keys)), f"${variable}")


class FileKeyProvider(_Keyring):
    """Keys from a JSON key file readable by its owner only."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            mode = path.stat().st_mode
        except OSError:
            raise KeyMaterialError(f"key file {path} does not exist") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyMaterialError(f"key file {path} is accessible by group or others; chmod 600 it")
        try:
            data = json.loads(path.read_text())
            entries, current = data["keys"], data["current"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            raise KeyMaterialError(f"key file {path} must be JSON with 'current' and 'keys'") from None
        if not isinstance(entries, dict) or not isinstance(current, str):
            raise KeyMaterialError(f"key file {path}: 'keys' must map ids to base64 keys and 'current' name one")
        keys = {str(k): _decode(str(k), str(v), str(path)) for k, v in entries.items()}
        super().__init__(keys, current, str(path))


def provider_from_env(variable: str, file_variable: str | None = None) -> KeyProvider | None:
    """The provider configured for a purpose: `$<variable>_FILE` (a key file) wins over `$<variable>`;
    None when neither is set (the feature is off)."""
    file_variable = file_variable or f"{variable}_FILE"
    if os.environ.get(file_variable, "").strip():
        return FileKeyProvider(os.environ[file_variable].strip())
    if os.environ.get(variable, "").strip():
        return EnvKeyProvider(variable)
    return None
