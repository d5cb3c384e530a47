"""`fulqrun-ml models encrypt NAME VERSION` seals a published version's model files at rest; `fulqrun-ml models
rotate-keys [NAME]` moves every encrypted model version onto the current encryption key.

Encrypting a signed version re-signs it after verifying it (so the signature covers the ciphertext and the
plaintext digests, signing.py) and never encrypts a tampered one. Triton's repository builder and
`fulqrun-ml score` decrypt in memory / into the Triton repository; other offline readers need the plain files.

Why a registry command: rotating a key is only finished when nothing is sealed with the old one any more, and
only then can the old key be retired (removed from $FULQRUN_ENCRYPTION_KEYS) without losing a version. Doing it
file by file with `rotate_tree` also broke signed versions (new ciphertext, stale signature). This walks every
version of one model (or all), re-encrypts with `rotate_signed_version` where the version is signed (content
checked first, re-signed after) and `rotate_tree` where signing is off, and records each changed version in the
model's audit log with who and when. It is an admin action when registry roles are on (registry/roles.py).
The same command then re-encrypts the sealed snapshots of the run directories (`rotate_run_snapshots`,
default: logs/ next to the registry): a run's holdout sealed with a retired key could no longer be exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fulqrun_ml.data.snapshot_files import rotate_snapshots, seal_snapshots
from fulqrun_ml.registry.audit import append_audit, current_actor
from fulqrun_ml.registry.encryption import SUFFIX, encrypt_file, encryption_provider, rotate_tree
from fulqrun_ml.registry.encryption_at_rest import MODEL_FILE_SUFFIXES
from fulqrun_ml.registry.key_material import ENCRYPTION_KEYS_ENV, KeyMaterialError
from fulqrun_ml.registry.roles import authorize
from fulqrun_ml.registry.signing import SIGNATURE_FILE, rotate_signed_version, sign_version, signing_provider
from fulqrun_ml.registry.signing import verify_version as verify_signed
from fulqrun_ml.registry.store import get_version, list_versions


@dataclass(frozen=True)
class Rotated:
    """One encrypted version after rotation: how many of its files were re-encrypted (0: already current)."""

    name: str
    version: int
    files: int
    key_id: str


def rotate_model_keys(models_dir: Path, name: str | None = None, actor: str | None = None) -> list[Rotated]:
    """Re-encrypt the encrypted versions of `name` (default: every model) with the current encryption key."""
    models_dir = Path(models_dir)
    encryption = encryption_provider()
    if encryption is None:
        raise KeyMaterialError(f"no encryption keys: set {ENCRYPTION_KEYS_ENV} (new key first) to rotate")
    key_id, _ = encryption.current()
    signer = signing_provider()
    found = (
        sorted(p.name for p in models_dir.iterdir() if list_versions(models_dir, p.name)) if models_dir.is_dir() else []
    )
    names = [name] if name else found  # no registry yet (only runs to rotate) is not an error
    if name and not list_versions(models_dir, name):
        raise KeyMaterialError(f"model '{name}' has no versions in {models_dir}")
    for model in names:  # every permission first: a refusal changes nothing anywhere
        authorize(models_dir, model, "rotate_keys", actor)
    done = []
    for model in names:
        for version in list_versions(models_dir, model):
            path = models_dir / model / str(version)
            if not any(path.rglob(f"*{SUFFIX}")):
                continue
            if signer is not None and (path / SIGNATURE_FILE).is_file():
                changed = rotate_signed_version(path, f"{model} v{version}", signer, encryption)
            else:
                changed = rotate_tree(path, encryption)
            if changed:
                append_audit(
                    models_dir / model, "rotate_keys", current_actor(actor), model=model, version=version,
                    key_id=key_id, files=changed,
                )  # fmt: skip
            done.append(Rotated(model, version, changed, key_id))
    return done


def rotate_run_snapshots(runs_dir: Path) -> int:
    """Re-encrypt the sealed snapshots (`*.parquet.enc`, data/snapshot_files.py) of every run under `runs_dir` with
    the current key, so the old key can be retired without stranding a run's holdout; how many files changed."""
    encryption = encryption_provider()
    if encryption is None:
        raise KeyMaterialError(f"no encryption keys: set {ENCRYPTION_KEYS_ENV} (new key first) to rotate")
    return rotate_snapshots(runs_dir, encryption) if Path(runs_dir).is_dir() else 0


def seal_run_snapshots(runs_dir: Path) -> list[Path]:
    """Seal the plain snapshots left by runs from before encryption at rest was on (`fulqrun-ml models
    seal-snapshots`): each plaintext is removed once its `.enc` exists, so none stays on disk. The sealed paths."""
    encryption = encryption_provider()
    if encryption is None:
        raise KeyMaterialError(f"no encryption keys: set {ENCRYPTION_KEYS_ENV} to seal snapshots")
    if not Path(runs_dir).is_dir():
        raise KeyMaterialError(f"runs folder {runs_dir} does not exist (pass --runs-dir)")
    return seal_snapshots(runs_dir, encryption)


def encrypt_version(models_dir: Path, name: str, version: int | str, actor: str | None = None) -> Rotated:
    """Encrypt the model files (`*.onnx`, `*.plan`) of one published version in place, re-signing it when signing
    is on; returns what was sealed (files=0 when it already was). Admin when roles are on; audited."""
    models_dir = Path(models_dir)
    encryption = encryption_provider()
    if encryption is None:
        raise KeyMaterialError(f"no encryption keys: set {ENCRYPTION_KEYS_ENV} to encrypt")
    found = get_version(models_dir, name, version)
    authorize(models_dir, name, "encrypt", actor)
    subject = f"{name} v{found.version}"
    signer = signing_provider()
    if signer is not None:
        verify_signed(found.path, subject, signer)  # never seal (and re-sign) a tampered version
    plain = sorted(p for p in found.path.rglob("*") if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    for path in plain:
        encrypt_file(path, encryption)  # atomic per file; the plaintext is removed after the ciphertext exists
    if signer is not None and plain:
        sign_version(found.path, subject, signer, encryption)
    key_id, _ = encryption.current()
    if plain:
        append_audit(
            models_dir / name, "encrypt", current_actor(actor), model=name, version=found.version, key_id=key_id,
            files=[str(p.relative_to(found.path)) for p in plain],
        )  # fmt: skip
    return Rotated(name, found.version, len(plain), key_id)
