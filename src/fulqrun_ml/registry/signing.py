"""Signed model versions: a manifest of every file's SHA-256, authenticated with HMAC-SHA256.

Why: a model version is code that runs on the serving hosts (an ONNX graph, a feature spec that drives
preprocessing). Anyone who can write to the models directory or the generated Triton repository could change
what the platform predicts without a trace. `sign_version` writes SIGNATURE.json next to the files; verification
(`verify_version`, before a version is loaded or copied into a Triton repository, and `verify_manifest` on the
copies in the repository before Triton starts) refuses a version whose bytes differ from what was signed, whose
file list changed, or whose manifest was edited (the MAC no longer matches), naming the file.

HMAC and not a public-key signature: signer and verifier are the same platform, keys already come from the
KMS-style `KeyProvider` (keys.py), and the key id in the signature lets keys rotate (old ids verify until
retired). The comparison is constant-time (`hmac.compare_digest`). The key lives in `$FULQRUN_SIGNING_KEYS`
(or a key file named by `$FULQRUN_SIGNING_KEYS_FILE`); when it is set, serving requires every version signed.

Encrypted files (`<name>.enc`, encryption.py): the manifest holds the ciphertext's digest, which says nothing
about the plain `<name>` the Triton repository builder decrypts next to Triton. So when the version holds
encrypted files and the encryption keyring is available at signing, the signature also lists each plaintext's
SHA-256 under `plain` (inside the MAC), and `verify_manifest` checks a plain `<name>` found in a Triton version
directory against it: a byte flipped in the decrypted model is refused before Triton starts, like any other file.
Signatures without `plain` (no encrypted files) have exactly the old MAC payload, so existing versions verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.encryption import SUFFIX, decrypt_file, encryption_provider, rotate_tree
from fulqrun_ml.registry.key_material import SIGNING_KEYS_ENV, KeyMaterialError, KeyProvider, provider_from_env
from fulqrun_ml.registry.locking import atomic_write_text

SIGNATURE_FILE = "SIGNATURE.json"
ALGORITHM = "HMAC-SHA256"


class TamperedVersionError(RegistryError):
    """A model version (or its copy in a Triton repository) does not match its signature."""


def signing_provider() -> KeyProvider | None:
    """The configured signing keyring, or None when signing is off."""
    return provider_from_env(SIGNING_KEYS_ENV)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_of(directory: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `directory` except the signature itself."""
    return {
        str(p.relative_to(directory)): file_digest(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != SIGNATURE_FILE
    }


def plain_digests(directory: Path, decryption: KeyProvider | None = None) -> dict[str, str]:
    """{relative path of the plain file: sha256 of its plaintext} for every `*.enc` under `directory`, decrypted in
    memory (AES-GCM authenticates each first) with `decryption`, else the configured encryption keyring (read only
    when there are encrypted files); {} when there are none or no keyring."""
    encrypted = sorted(p for p in Path(directory).rglob(f"*{SUFFIX}") if p.is_file())
    decryption = decryption or (encryption_provider() if encrypted else None)
    if decryption is None:
        return {}
    return {
        str(p.relative_to(directory))[: -len(SUFFIX)]: hashlib.sha256(decrypt_file(p, decryption)).hexdigest()
        for p in encrypted
    }


def _mac(key: bytes, files: dict[str, str], subject: str, plain: dict[str, str] | None = None) -> str:
    content: dict[str, Any] = {"subject": subject, "files": files}
    if plain:  # only then: signatures of versions without encrypted files keep their old payload
        content["plain"] = plain
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def sign_version(
    directory: Path, subject: str, provider: KeyProvider, decryption: KeyProvider | None = None
) -> dict[str, Any]:
    """Write SIGNATURE.json for the files now in `directory`; `subject` ("deal_win v3") is bound into the MAC
    so a signature cannot be moved to another model or version. Encrypted files also get their plaintext's
    digest, decrypted with `decryption` (default: the configured encryption keyring, when there is one)."""
    key_id, key = provider.current()
    files = manifest_of(Path(directory))
    plain = plain_digests(Path(directory), decryption)
    signature: dict[str, Any] = {"algorithm": ALGORITHM, "key_id": key_id, "subject": subject, "files": files}
    if plain:
        signature["plain"] = plain
    signature["mac"] = _mac(key, files, subject, plain)
    atomic_write_text(Path(directory) / SIGNATURE_FILE, json.dumps(signature, indent=2))
    return signature


def read_signature(path: Path, provider: KeyProvider, where: str) -> dict[str, Any]:
    """The signature at `path`, with its MAC checked: a manifest edited after signing is refused here."""
    try:
        signature = json.loads(path.read_text())
        files, subject, key_id, mac = signature["files"], signature["subject"], signature["key_id"], signature["mac"]
    except FileNotFoundError:
        raise TamperedVersionError(f"{where} is not signed (no {path.name}); refusing to serve it") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise TamperedVersionError(f"{where}: {path.name} is unreadable; refusing to serve it") from None
    if signature.get("algorithm") != ALGORITHM:
        raise TamperedVersionError(f"{where}: unsupported signature algorithm {signature.get('algorithm')!r}")
    try:
        key = provider.key(str(key_id))
    except KeyMaterialError as exc:
        raise TamperedVersionError(f"{where}: signed with key '{key_id}', which cannot be used: {exc}") from None
    plain = signature.get("plain") or {}
    if not isinstance(plain, dict):
        raise TamperedVersionError(f"{where}: {path.name} is unreadable; refusing to serve it")
    if not hmac.compare_digest(_mac(key, files, subject, plain), str(mac)):
        raise TamperedVersionError(f"{where}: {path.name} does not match its MAC (the manifest was altered)")
    return signature


def verify_version(directory: Path, subject: str, provider: KeyProvider) -> dict[str, Any]:
    """Raise TamperedVersionError unless `directory` holds exactly the signed files, byte for byte."""
    where = f"{subject} at {directory}"
    signature = read_signature(Path(directory) / SIGNATURE_FILE, provider, where)
    if signature["subject"] != subject:
        raise TamperedVersionError(f"{where}: the signature is for {signature['subject']!r}")
    verify_manifest(Path(directory), signature["files"], where, exact=True)
    return signature


def verify_manifest(
    directory: Path, files: dict[str, str], where: str, exact: bool = False, plain: dict[str, str] | None = None
) -> None:
    """Each listed file that should be in `directory` has its signed digest. exact: also no file missing or
    added (a registry version); otherwise only the files present are checked (a Triton version directory holds
    a subset of the version's files plus generated ones). `plain`: the signed plaintext digests of encrypted
    files; a decrypted copy present in `directory` must match its entry."""
    actual = manifest_of(directory)
    if exact:
        missing, added = sorted(set(files) - set(actual)), sorted(set(actual) - set(files))
        if missing or added:
            raise TamperedVersionError(f"{where}: files differ from the signed ones (missing {missing}, added {added})")
    for name, digest in files.items():
        if name in actual and not hmac.compare_digest(actual[name], digest):
            raise TamperedVersionError(f"{where}: {name} was modified after signing (sha256 mismatch); refusing it")
    for name, digest in (plain or {}).items():
        if name in actual and name not in files and not hmac.compare_digest(actual[name], digest):
            raise TamperedVersionError(
                f"{where}: {name} (decrypted from {name}{SUFFIX}) was modified after signing (sha256 mismatch); "
                "refusing it"
            )


def rotate_signed_version(directory: Path, subject: str, signer: KeyProvider, encryption: KeyProvider) -> int:
    """Re-encrypt a signed version's `*.enc` files with the current encryption key and sign it again; returns how
    many files changed.

    Why not `rotate_tree` alone: new ciphertext means new digests, so the old signature would refuse the version.
    Why not re-sign blindly: that would launder a tampered version. So the version is checked first by content:
    every plain file against its signed digest, every encrypted one by decrypting it (AES-GCM authenticates it)
    to its signed plaintext digest, whichever key sealed it. That also makes the rotation safe to run again after
    a crash between re-encrypting and re-signing."""
    directory = Path(directory)
    where = f"{subject} at {directory}"
    signature = read_signature(directory / SIGNATURE_FILE, signer, where)
    if signature["subject"] != subject:
        raise TamperedVersionError(f"{where}: the signature is for {signature['subject']!r}")
    plain, files = signature.get("plain") or {}, signature["files"]
    if not plain:  # signed without plaintext digests: the ciphertexts themselves must be the signed ones
        verify_manifest(directory, files, where, exact=True)
    else:
        clear = {name: digest for name, digest in files.items() if not name.endswith(SUFFIX)}
        verify_manifest(directory, clear, where)  # ciphertext digests may differ after a crash...
        if set(files) != set(manifest_of(directory)):
            raise TamperedVersionError(f"{where}: files differ from the signed ones; refusing to rotate it")
        if plain_digests(directory, encryption) != plain:  # ...but never what they decrypt to
            raise TamperedVersionError(f"{where}: an encrypted file does not hold the signed plaintext; refusing it")
    changed = rotate_tree(directory, encryption)
    if changed or signature["key_id"] != signer.current()[0] or manifest_of(directory) != files:
        sign_version(directory, subject, signer, encryption)
    return changed
