"""The registry's view of the key providers: they live in crypto/keys.py, under the data layer, so snapshots
(data/snapshot_files.py) and model files are sealed with one keyring implementation. Re-exported here for the
registry's callers (signing, encryption, key rotation); there is no second copy.
"""

from __future__ import annotations

from fulqrun_ml.crypto.keys import (
    ENCRYPTION_KEYS_ENV,
    MIN_KEY_BYTES,
    SIGNING_KEYS_ENV,
    EnvKeyProvider,
    FileKeyProvider,
    KeyMaterialError,
    KeyProvider,
    new_key,
    provider_from_env,
)

__all__ = [
    "ENCRYPTION_KEYS_ENV",
    "MIN_KEY_BYTES",
    "SIGNING_KEYS_ENV",
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyMaterialError",
    "KeyProvider",
    "new_key",
    "provider_from_env",
]
