"""`fulqrun-ml deploy k8s --out DIR --s3 s3://bucket/prefix`: Kubernetes manifests for a registry version.

What it does, in order, so that nothing points at something incomplete:
1. resolves the version (`--version`: production by default) in the local registry;
2. publishes the version and its GPU-host Triton repository (the NGC container's: onnxruntime, or the TensorRT
   ensemble when the version carries an engine; serving/deploy.py) to the object-store registry, manifest last;
3. generates the manifests (serving/k8s.py) naming that repository's immutable prefix, validates each against
   the official Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors) and publishes
   DIR atomically (written beside it, then renamed; a previous generation in DIR is replaced whole).
"""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import yaml

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.object_store import ObjectRegistry
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.serving.deploy import gpu_serving_configs
from fulqrun_ml.serving.k8s import K8sOptions, manifests
from fulqrun_ml.serving.object_repo import push_triton_repository


class _PlainDumper(yaml.SafeDumper):
    """No YAML anchors/aliases for objects shared between probes: plain manifests, as people write them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


MARKER = ".fulqrun-k8s"  # a directory holding this was written by us and may be replaced whole
KUBERNETES_VERSION = "1.30.0"


def validate(obj: dict[str, Any], where: str) -> None:
    """Strict schema check of one object; FulqrunMLError naming the file and the offending path."""
    try:
        import kubernetes_validate
    except ImportError:
        raise FulqrunMLError("kubernetes-validate is not installed: pip install -e '.[k8s]'") from None
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        raise FulqrunMLError(f"{where}: invalid Kubernetes {obj.get('kind')} at '{path}': {exc.message}") from None


def publish_dir(files: dict[str, str], out: Path) -> None:
    """Write `files` into `out` atomically: complete or absent, never a mix of two generations."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise FulqrunMLError(f"--out {out} exists and was not written by `deploy k8s`; pick an empty directory")
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
        (tmp / MARKER).write_text("")
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def generate(args: argparse.Namespace) -> Path:
    serving = compose_config("serve", []).serving
    version = get_version(Path(args.models_dir), args.model, args.version)
    opts = K8sOptions(
        namespace=args.namespace,
        image=args.image,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        gpus=args.gpus,
        queue_target_us=int(args.queue_target_ms * 1000),
        latency_target_us=int(args.latency_target_ms * 1000),
    )
    try:
        opts.check()
    except ValueError as exc:
        raise FulqrunMLError(f"deploy k8s: {exc}") from None
    from botocore.exceptions import BotoCoreError, ClientError

    configs = gpu_serving_configs(version, serving)
    try:
        registry = ObjectRegistry(args.s3)
        registry.push_version(version)
        repository_url = push_triton_repository(registry, version, configs, variant="gpu")
    except (BotoCoreError, ClientError) as exc:  # unreachable endpoint, no bucket, bad credentials
        raise FulqrunMLError(f"deploy k8s: object store {args.s3}: {exc}") from None
    objects = manifests(version.name, version.version, repository_url, [c.name for c in configs], opts)
    files = {}
    for name, obj in objects.items():
        validate(obj, name)
        files[name] = yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False)
    files["all.yaml"] = "---\n".join(files[n] for n in objects if n != "prometheus-adapter-rules.yaml")
    publish_dir(files, Path(args.out))
    return Path(args.out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fulqrun-ml deploy", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="target", required=True)
    k8s = sub.add_parser("k8s", help="Deployment + Service + HPA + PDB for a registry version (NGC Triton)")
    k8s.add_argument("--out", required=True, help="directory for the manifests (replaced whole when regenerated)")
    k8s.add_argument("--s3", required=True, help="object-store registry root, s3://bucket/prefix (AWS_* env)")
    k8s.add_argument("--models-dir", default="models")
    k8s.add_argument("--model", default="deal_win")
    k8s.add_argument("--version", default="production", help="a number, latest, production or candidate")
    k8s.add_argument("--namespace", default="fulqrun")
    k8s.add_argument("--image", default=K8sOptions.image)
    k8s.add_argument("--min-replicas", type=int, default=K8sOptions.min_replicas)
    k8s.add_argument("--max-replicas", type=int, default=K8sOptions.max_replicas)
    k8s.add_argument("--gpus", type=int, default=K8sOptions.gpus, help="GPUs per pod (0: CPU)")
    k8s.add_argument("--queue-target-ms", type=float, default=K8sOptions.queue_target_us / 1000)
    k8s.add_argument("--latency-target-ms", type=float, default=K8sOptions.latency_target_us / 1000)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    out = generate(args)
    print(f"wrote Kubernetes manifests to {out} (validated against Kubernetes {KUBERNETES_VERSION} schemas)")
    print(f"apply: kubectl apply -f {out}/all.yaml; merge {out}/prometheus-adapter-rules.yaml into the adapter")
    return 0
