"""Kubernetes manifests for a registry version: Deployment, Service, HPA on Triton's own metrics, PDB.

Why generated from the registry and not hand-written: the model names Triton must load, the version, and the
object-store location of the repository all come from the registry, and a manifest that names a different
version than the repository it mounts is the classic rollout bug. The shape:

- The pod's model repository is an `emptyDir` volume filled by an initContainer (`aws s3 sync`) from the
  version's Triton repository on object storage, pushed manifest-last by registry/object_store.py. The manifest
  names the tree's immutable upload prefix, so a pod never starts on a half-uploaded repository; a promotion is
  a regenerated manifest and `kubectl apply` (a Deployment rolling update: maxUnavailable 0).
- Triton runs the NGC image in explicit model-control mode with the model-control API behind the control key
  (serving/access.py), taken from a Secret; S3 credentials come from another Secret. Neither value is in the
  manifests.
- The HPA scales on two per-pod custom metrics that the Prometheus adapter derives from Triton's /metrics
  (`nv_inference_queue_duration_us`, `nv_inference_request_duration_us`, `nv_inference_request_success`):
  average queue time and average request latency per request over one minute. The adapter rules ship as a
  ConfigMap next to the HPA (`prometheus-adapter-rules.yaml`) to merge into the adapter's config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fulqrun_ml.serving.access import CONTROL_KEY_ENV, restricted_api_flags

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, the version of the CPU binary tested here
SYNC_IMAGE = "amazon/aws-cli:2.22.35"
QUEUE_METRIC = "triton_queue_us_per_request"
LATENCY_METRIC = "triton_request_us_per_request"
S3_SECRET = "fulqrun-s3"  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, optional AWS_ENDPOINT_URL
CONTROL_SECRET = "fulqrun-triton-control"  # key: the model-control key


@dataclass(frozen=True)
class K8sOptions:
    namespace: str = "fulqrun"
    image: str = TRITON_IMAGE
    min_replicas: int = 2
    max_replicas: int = 8
    gpus: int = 1  # per pod; 0 runs Triton on CPU (onnxruntime)
    queue_target_us: int = 20_000  # scale out when requests wait this long in Triton's queue on average
    latency_target_us: int = 100_000  # or when the average request takes this long end to end

    def check(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")
        if self.gpus < 0 or self.queue_target_us <= 0 or self.latency_target_us <= 0:
            raise ValueError("gpus must be >= 0 and the metric targets > 0")


def _labels(app: str, version: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "fulqrun-ml",
        "fulqrun.io/version": str(version),
    }


def deployment(app: str, version: int, repository_url: str, models: Sequence[str], opts: K8sOptions) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": app}
    key_ref = f"$({CONTROL_KEY_ENV})"  # Kubernetes expands $(VAR) in args from the container's env
    args = [
        "tritonserver",
        "--model-repository=/models",
        "--model-control-mode=explicit",
        *(f"--load-model={m}" for m in models),
        "--strict-readiness=true",
        "--exit-on-error=true",
        *restricted_api_flags(key_ref),
    ]
    resources: dict[str, Any] = {"requests": {"cpu": "1", "memory": "2Gi"}}
    if opts.gpus:
        resources["limits"] = {"nvidia.com/gpu": str(opts.gpus)}
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": opts.namespace, "labels": _labels(app, version)},
        "spec": {
            "replicas": opts.min_replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": {**selector, **_labels(app, version)},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8002"},
                },
                "spec": {
                    "volumes": [{"name": "model-repository", "emptyDir": {}}],
                    "initContainers": [
                        {
                            "name": "model-repository",
                            "image": SYNC_IMAGE,
                            "command": ["aws", "s3", "sync", "--no-progress", repository_url, "/models"],
                            "envFrom": [{"secretRef": {"name": S3_SECRET}}],
                            "volumeMounts": [{"name": "model-repository", "mountPath": "/models"}],
                        }
                    ],
                    "containers": [
                        {
                            "name": "triton",
                            "image": opts.image,
                            "args": args,
                            "env": [
                                {
                                    "name": CONTROL_KEY_ENV,
                                    "valueFrom": {"secretKeyRef": {"name": CONTROL_SECRET, "key": "key"}},
                                }
                            ],
                            "ports": [
                                {"name": "http", "containerPort": 8000},
                                {"name": "grpc", "containerPort": 8001},
                                {"name": "metrics", "containerPort": 8002},
                            ],
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "httpGet": {"path": "/v2/health/live", "port": "http"}},
                            "startupProbe": {**probe, "failureThreshold": 60},
                            "resources": resources,
                            "volumeMounts": [{"name": "model-repository", "mountPath": "/models", "readOnly": True}],
                        }
                    ],
                },
            },
        },
    }


def service(app: str, version: int, opts: K8sOptions) -> dict[str, Any]:
    ports = [("http", 8000), ("grpc", 8001), ("metrics", 8002)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "namespace": opts.namespace, "labels": _labels(app, version)},
        "spec": {
            "selector": {"app.kubernetes.io/name": app},
            "ports": [{"name": n, "port": p, "targetPort": n} for n, p in ports],
        },
    }


def autoscaler(app: str, version: int, opts: K8sOptions) -> dict[str, Any]:
    def pods_metric(name: str, target_us: int) -> dict[str, Any]:
        return {
            "type": "Pods",
            "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": str(target_us)}},
        }

    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": app, "namespace": opts.namespace, "labels": _labels(app, version)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": opts.min_replicas,
            "maxReplicas": opts.max_replicas,
            "metrics": [
                pods_metric(QUEUE_METRIC, opts.queue_target_us),
                pods_metric(LATENCY_METRIC, opts.latency_target_us),
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def disruption_budget(app: str, version: int, opts: K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": app, "namespace": opts.namespace, "labels": _labels(app, version)},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": app}}},
    }


def adapter_rules(app: str, version: int, opts: K8sOptions) -> dict[str, Any]:
    """prometheus-adapter rules turning Triton's counters into the two per-pod metrics the HPA reads."""

    def rule(counter: str, name: str) -> str:
        per_pod = "sum(rate({m}{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>)"
        return (
            f'- seriesQuery: \'{counter}{{namespace!="",pod!=""}}\'\n'
            "  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n"
            f'  name: {{matches: "{counter}", as: "{name}"}}\n'
            f"  metricsQuery: '{per_pod.format(m=counter)} / "
            f"clamp_min({per_pod.format(m='nv_inference_request_success')}, 0.001)'\n"
        )

    rules = "rules:\n" + rule("nv_inference_queue_duration_us", QUEUE_METRIC)
    rules += rule("nv_inference_request_duration_us", LATENCY_METRIC)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{app}-adapter-rules", "namespace": opts.namespace, "labels": _labels(app, version)},
        "data": {"config.yaml": rules},
    }


def manifests(
    model: str, version: int, repository_url: str, models: Sequence[str], opts: K8sOptions
) -> dict[str, dict[str, Any]]:
    """File name -> Kubernetes object, for one version of `model`."""
    opts.check()
    app = f"fulqrun-{model}".replace("_", "-")
    return {
        "deployment.yaml": deployment(app, version, repository_url, models, opts),
        "service.yaml": service(app, version, opts),
        "hpa.yaml": autoscaler(app, version, opts),
        "pdb.yaml": disruption_budget(app, version, opts),
        "prometheus-adapter-rules.yaml": adapter_rules(app, version, opts),
    }
