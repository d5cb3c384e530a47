"""The registry on S3-compatible object storage (AWS S3, MinIO, Ceph, Supabase Storage's S3 API, moto in tests).

Why: replicas on several hosts have no shared disk, so the registry they pull from and the Triton repository they
load must live in object storage. Object stores have no rename, so the local registry's atomic publish
(registry/store.py: write a temporary directory, rename it into place) becomes *staging prefix + manifest last*:

    <prefix>/<name>/versions/<v>/<upload>/<file>   every file of version v, under a fresh upload id (staging)
    <prefix>/<name>/versions/<v>/MANIFEST.json     written last, once: upload id + sha256 and size of each file
    <prefix>/<name>/aliases/<alias>.json           {"version": v}: one PUT, so a promotion is atomic too
    <prefix>/<name>/triton/<variant>/<v>/<upload>/...  a Triton repository of version v for one host kind
    <prefix>/<name>/triton/<variant>/<v>/MANIFEST.json written last, like a version's

Readers trust only manifests: a version without one does not exist (a crashed upload leaves only objects
under an upload id nobody references), and every downloaded file is checked against the manifest's sha256,
so a reader never sees a half-written or altered version. The manifest is written with `If-None-Match: *`
(S3 conditional writes), so two publishers cannot both claim version v.

Credentials and the endpoint come from the environment as boto3 reads them (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION); they are never written to an artifact or a log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.locking import fsync_dir
from fulqrun_ml.registry.store import METADATA_FILE, TMP_PREFIX, ModelVersion, get_version, list_versions

MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class ObjectStoreURL:
    """`s3://bucket/prefix` split once; the prefix never starts or ends with '/'."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> ObjectStoreURL:
        if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
            raise RegistryError(f"object-store registry URL must look like s3://bucket/prefix, got {url!r}")
        bucket, _, prefix = url[5:].partition("/")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str | int) -> str:
        return "/".join(p for p in (self.prefix, *(str(x) for x in parts)) if p)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client; the endpoint defaults to $AWS_ENDPOINT_URL (boto3 reads it), path-style addressing so
    `http://host:port/bucket` servers (MinIO, moto, Supabase) work."""
    import boto3  # the `s3` extra; imported here so the local registry never needs it
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url, config=Config(s3={"addressing_style": "path"}))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ObjectRegistry:
    """Versions, aliases and Triton repositories of one registry root on object storage."""

    def __init__(self, url: str, client: Any | None = None) -> None:
        self.url = ObjectStoreURL.parse(url)
        self.client = client or s3_client()

    # -- low level: a tree of files published under a staging prefix, then its manifest ------------------------
    def _read_json(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.url.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise RegistryError(f"object store {self.url}: cannot read {key}: {exc}") from None
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise RegistryError(f"object store {self.url}: {key} is not valid JSON") from None

    def push_tree(self, root: Path, base: str) -> dict[str, Any]:
        """Upload every file under `root` to `<base>/<upload>/...`, then `<base>/MANIFEST.json` (last, once).

        Returns the manifest. A manifest already there with the same files is success (a retried push); with
        other files it is an error: a version number is never overwritten."""
        from botocore.exceptions import ClientError

        files = {str(p.relative_to(root)): p for p in sorted(Path(root).rglob("*")) if p.is_file()}
        entries = {rel: {"sha256": _sha256(p), "size": p.stat().st_size} for rel, p in files.items()}
        existing = self._read_json(f"{base}/{MANIFEST}")
        if existing is not None:
            if existing["files"] == entries:
                return existing
            raise RegistryError(f"object store {self.url}: {base} is already published with other files")
        upload = uuid.uuid4().hex
        for rel, path in files.items():
            self.client.upload_file(str(path), self.url.bucket, f"{base}/{upload}/{rel}")
        manifest = {"upload": upload, "files": entries}
        try:
            self.client.put_object(
                Bucket=self.url.bucket, Key=f"{base}/{MANIFEST}", Body=json.dumps(manifest).encode(), IfNoneMatch="*"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise RegistryError(f"object store {self.url}: another publisher took {base} first") from None
            raise
        return manifest

    def pull_tree(self, base: str, target: Path) -> dict[str, Any]:
        """Download the tree `base`'s manifest names into `target` (which must not exist yet), checking each
        file's sha256; RegistryError when there is no manifest or a file does not match it."""
        manifest = self._read_json(f"{base}/{MANIFEST}")
        if manifest is None:
            raise RegistryError(f"object store {self.url}: nothing published at {base} (no {MANIFEST})")
        for rel, entry in manifest["files"].items():
            path = Path(target) / rel
            if not path.resolve().is_relative_to(Path(target).resolve()):
                raise RegistryError(f"object store {self.url}: {base}/{MANIFEST} names a path outside it: {rel}")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.url.bucket, f"{base}/{manifest['upload']}/{rel}", str(path))
            if _sha256(path) != entry["sha256"]:
                raise RegistryError(f"object store {self.url}: {base}/{rel} does not match its manifest")
        return manifest

    def tree_url(self, base: str) -> str:
        """The s3:// URL of a published tree's content (what Triton's --model-repository or a sync reads)."""
        manifest = self._read_json(f"{base}/{MANIFEST}")
        if manifest is None:
            raise RegistryError(f"object store {self.url}: nothing published at {base} (no {MANIFEST})")
        return f"s3://{self.url.bucket}/{base}/{manifest['upload']}"

    # -- registry versions and aliases --------------------------------------------------------------------------
    def version_base(self, name: str, version: int) -> str:
        return self.url.key(name, "versions", version)

    def triton_base(self, name: str, version: int, variant: str) -> str:
        """Where a Triton repository of `version` lives; `variant` ("cpu", "gpu", ...) keeps the repositories of
        one version for different hosts apart (each is immutable once its manifest is written)."""
        return self.url.key(name, "triton", variant, version)

    def push_version(self, version: ModelVersion) -> dict[str, Any]:
        """Publish a local registry version under the same number."""
        return self.push_tree(version.path, self.version_base(version.name, version.version))

    def versions(self, name: str) -> list[int]:
        """Published version numbers of `name` (those with a manifest), oldest first."""
        prefix = self.url.key(name, "versions") + "/"
        found = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.url.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                head, _, tail = item["Key"][len(prefix) :].partition("/")
                if tail == MANIFEST and head.isdigit():
                    found.add(int(head))
        return sorted(found)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `alias` at a published version (one PUT: readers see the old or the new pointer, never half)."""
        if version not in self.versions(name):
            raise RegistryError(f"object store {self.url}: model '{name}' has no published version {version}")
        key = self.url.key(name, "aliases", f"{alias}.json")
        self.client.put_object(Bucket=self.url.bucket, Key=key, Body=json.dumps({"version": version}).encode())

    def resolve(self, name: str, alias: str) -> int | None:
        """The version `alias` points at, or None when it is unset."""
        pointer = self._read_json(self.url.key(name, "aliases", f"{alias}.json"))
        return None if pointer is None else int(pointer["version"])

    def pull_version(self, name: str, version: int, models_dir: Path) -> ModelVersion:
        """The version in the local registry `models_dir` under the same number, downloaded if absent.

        Downloaded into a `.tmp-*` directory and renamed into place, so the local registry stays complete or
        absent as registry/store.py promises."""
        if version in list_versions(models_dir, name):
            local = get_version(models_dir, name, version)
            remote = self._read_json(f"{self.version_base(name, version)}/{MANIFEST}")
            if remote is None or remote["files"][METADATA_FILE]["sha256"] != _sha256(local.path / METADATA_FILE):
                raise RegistryError(f"local {name} v{version} differs from {self.url}; refusing to mix them")
            return local
        root = Path(models_dir) / name
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            self.pull_tree(self.version_base(name, version), tmp)
            os.rename(tmp, root / str(version))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(root)
        return get_version(models_dir, name, version)
