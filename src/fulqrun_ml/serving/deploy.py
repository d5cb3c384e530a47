"""What a published version is served as, in one place: `fulqrun-ml serve`, `fulqrun-ml run`, the live swap after
a promote or rollback, and the serving benchmark all build their Triton repositories here.

Why one place: the batching settings of `configs/serving/cpu.yaml`, the endpoints a version gets (the fast one
and, for tabular models, `<name>_reasons`) and the GPU-host variant used to be assembled in the CLI and again in
the benchmark, so the benchmark could measure something other than what was served. Every caller now passes
the `serving` config group (a DictConfig or any mapping with its keys) and gets the same configs.

CPU host (what this machine serves, models/triton_repo):
  tabular version      `<name>` (python-ort) + `<name>_reasons` (python-ort with the reasons output)
  tensor-input version `<name>` (python-tensor): reasons ablate raw CRM columns, which these do not take
GPU host (models/triton_repo_gpu, for the NGC container):
  exported --tensorrt  the ensemble `<name>` = `<name>_preprocess` (onnxruntime, CPU) -> `<name>_net` (TensorRT)
  otherwise            `<name>` on onnxruntime (optionally with its TensorRT execution accelerator)
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.export.tensorrt import PLAN_FILE, PREPROCESS_FILE, SEAM
from fulqrun_ml.registry.aliases import AliasChange
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.serving.by_id import by_id_config
from fulqrun_ml.serving.control import ModelController
from fulqrun_ml.serving.nba import nba_actions_config
from fulqrun_ml.serving.nba_files import is_effect_model
from fulqrun_ml.serving.replicas import ReplicaSet, live_replica_state, roll_out_to_state
from fulqrun_ml.serving.repository import (
    EnsembleStep,
    TensorSpec,
    TritonModelConfig,
    TritonRepositoryBuilder,
    config_for_version,
    cpu_variant,
)
from fulqrun_ml.serving.server import TritonServer

CPU_REPOSITORY = "triton_repo"
GPU_REPOSITORY = "triton_repo_gpu"
REPLICA_RUN_DIR = "triton_replicas"  # `serve --replicas N`: nginx.conf, replica repositories, replicas.json


def batching_options(serving: Mapping[str, Any]) -> dict[str, Any]:
    """The dynamic-batching settings every variant shares."""
    return {
        "max_batch_size": int(serving["max_batch_size"]),
        "max_queue_delay_microseconds": int(serving["max_queue_delay_microseconds"]),
        "preferred_batch_sizes": tuple(int(b) for b in serving["preferred_batch_sizes"]),
    }


def cpu_options(serving: Mapping[str, Any]) -> dict[str, Any]:
    """Batching plus the CPU instance settings: the keyword arguments of `config_for_version` on a CPU host."""
    return {
        **batching_options(serving),
        "instance_count": int(serving["instance_count"]),
        "ort_intra_op_threads": int(serving["ort_intra_op_threads"]),
        "prediction_log": prediction_log_options(serving),
    }


def prediction_log_options(serving: Mapping[str, Any]) -> dict[str, Any] | None:
    """`serving.prediction_log` as `config_for_version` takes it (the backend's spool under <dir>/spool), or
    None when it is absent or disabled. A relative `dir` is taken from the working directory, like `paths`."""
    settings = serving.get("prediction_log") or {}
    if not settings.get("enabled"):
        return None
    return {
        "spool_dir": Path(str(settings["dir"])).resolve() / "spool",
        "fsync": bool(settings.get("fsync", False)),
        "rotate_bytes": int(float(settings.get("rotate_mb", 64)) * (1 << 20)),
    }


def cpu_serving_configs(version: ModelVersion, serving: Mapping[str, Any]) -> list[TritonModelConfig]:
    """What this machine serves for a version: the fast endpoint and, for tabular models, `<name>_reasons`
    and, when `serving.by_id.enabled`, `<name>_by_id` (last: it calls `<name>`, which must load first); for a
    next-best-action effect model, `<name>` (uplift per arm) and `<name>_actions` (ranked top-k, serving/nba.py)."""
    options = cpu_options(serving)
    if is_effect_model(version.metadata):  # next best action: per-arm uplifts + the ranked top-k endpoint
        return [
            config_for_version(version, cpu_variant(version), **options),
            nba_actions_config(
                version,
                instance_count=options["instance_count"],
                ort_intra_op_threads=options["ort_intra_op_threads"],
                **batching_options(serving),
            ),
        ]
    if cpu_variant(version) == "python-tensor":
        return [config_for_version(version, "python-tensor", **options)]
    configs = [
        config_for_version(version, "python-ort", **options),
        config_for_version(version, "python-ort", reasons_top_k=int(serving["reasons_top_k"]), **options),
    ]
    by_id = serving.get("by_id") or {}
    if by_id.get("enabled"):
        configs.append(
            by_id_config(
                version,
                str(by_id["redis_url"]),
                instance_count=int(by_id.get("instance_count") or serving["instance_count"]),
                socket_timeout_s=float(by_id.get("socket_timeout_s", 0.3)),
                **batching_options(serving),
            )
        )
    return configs


def tensorrt_ensemble_configs(
    version: ModelVersion,
    max_batch_size: int = 1024,
    max_queue_delay_microseconds: int = 200,
    preferred_batch_sizes: tuple[int, ...] = (),
    instance_count: int = 1,
) -> list[TritonModelConfig]:
    """The three models of the TensorRT variant, in load order: preprocess, net, ensemble.

    Needs a version exported with `--tensorrt` (preprocess.onnx + model.plan). The seam tensors' widths
    come from the version's feature spec, so the configs match the engine's inputs."""
    missing = [f for f in (PREPROCESS_FILE, PLAN_FILE) if not (version.path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{version.name} v{version.version} has no {', '.join(missing)}: export it with --tensorrt on a GPU host"
        )
    meta = version.metadata
    raw_inputs = tuple(TensorSpec(i["name"], i["dtype"]) for i in meta["inputs"])
    outputs = tuple(TensorSpec(o["name"], o["dtype"]) for o in meta["outputs"])
    widths = {"continuous": 0, "categorical": 0}
    for tensor in meta["inputs"]:
        widths["continuous" if tensor["dtype"] == "float32" else "categorical"] += 1
    seam = (
        TensorSpec(SEAM[0], "float32", (widths["continuous"],)),
        TensorSpec(SEAM[1], "int64", (widths["categorical"],)),
    )
    batching = {
        "max_batch_size": max_batch_size,
        "max_queue_delay_microseconds": max_queue_delay_microseconds,
        "preferred_batch_sizes": tuple(preferred_batch_sizes),
        "instance_count": instance_count,
    }
    name = version.name
    preprocess = TritonModelConfig(
        name=f"{name}_preprocess",
        inputs=raw_inputs,
        outputs=seam,
        variant="onnxruntime-cpu",
        version_files=((PREPROCESS_FILE, "model.onnx"),),
        **batching,
    )
    net = TritonModelConfig(
        name=f"{name}_net",
        inputs=seam,
        outputs=outputs,
        variant="tensorrt_plan",
        version_files=((PLAN_FILE, "model.plan"),),
        **batching,
    )
    ensemble = TritonModelConfig(
        name=name,
        inputs=raw_inputs,
        outputs=outputs,
        variant="ensemble",
        max_batch_size=max_batch_size,
        version_files=(),
        ensemble_steps=(
            EnsembleStep(preprocess.name, {t.name: t.name for t in raw_inputs}, {t.name: t.name for t in seam}),
            EnsembleStep(net.name, {t.name: t.name for t in seam}, {t.name: t.name for t in outputs}),
        ),
    )
    return [preprocess, net, ensemble]


def gpu_serving_configs(version: ModelVersion, serving: Mapping[str, Any]) -> list[TritonModelConfig]:
    """What a GPU host (the NGC container) serves: the TensorRT ensemble when the version carries an engine,
    otherwise the ONNX graph on onnxruntime."""
    if (version.path / PLAN_FILE).is_file():
        return tensorrt_ensemble_configs(
            version, instance_count=int(serving["instance_count"]), **batching_options(serving)
        )
    accelerator = bool(serving["gpu_tensorrt_accelerator"])
    return [config_for_version(version, "onnxruntime", tensorrt_accelerator=accelerator, **batching_options(serving))]


def build_repositories(version: ModelVersion, serving: Mapping[str, Any], models_dir: Path) -> tuple[Path, list[str]]:
    """Write the CPU repository (served here) and the GPU-host variant next to it under `models_dir`.

    Returns the CPU repository and the model names in it (what an explicit-model-control server loads)."""
    cpu_repo = Path(models_dir) / CPU_REPOSITORY
    configs = cpu_serving_configs(version, serving)
    for config in configs:
        TritonRepositoryBuilder(cpu_repo).add(version, config)
    gpu_builder = TritonRepositoryBuilder(Path(models_dir) / GPU_REPOSITORY)
    for config in gpu_serving_configs(version, serving):
        gpu_builder.add(version, config)
    return cpu_repo, [c.name for c in configs]


def serve_until_stopped(
    models_dir: Path,
    name: str,
    version: int | str,
    serving: Mapping[str, Any],
    announce: Callable[[str], None] = print,
    replicas: int = 1,
) -> None:
    """`fulqrun-ml serve`: generate both repositories for the version the registry resolves `version` to (an
    alias such as `production`, a number or `latest`), start Triton on the configured loopback ports with
    explicit model control (so a later promote or rollback can swap versions live) and serve until SIGINT or
    SIGTERM. A server that dies is an error with its log tail, not a silent exit. `replicas` > 1: that many
    Triton processes behind nginx on the same ports (serving/replicas.py); a dead replica is restarted."""
    resolved = get_version(models_dir, name, version)
    repo, model_names = build_repositories(resolved, serving, models_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if replicas > 1:
        _serve_replicas(resolved, serving, Path(models_dir) / REPLICA_RUN_DIR, replicas, stop, announce)
        return
    ports = (int(serving["http_port"]), int(serving["grpc_port"]), int(serving["metrics_port"]))
    # The gateway answers malformed requests with 400 (Triton 2.51 says 500); see serving/gateway.py.
    with TritonServer(repo, *ports, explicit_models=model_names, gateway=True) as server:
        announce(
            f"serving {resolved.name} v{resolved.version}: http {server.http_url}  grpc {server.grpc_url}  "
            "(Ctrl-C stops)"
        )
        while not stop.wait(1.0):
            if server.process is None or server.process.poll() is not None:
                raise FulqrunMLError(f"tritonserver exited:\n{server.log_tail()}")
    announce("server stopped")


def _serve_replicas(
    version: ModelVersion,
    serving: Mapping[str, Any],
    run_dir: Path,
    replicas: int,
    stop: threading.Event,
    announce: Callable[[str], None],
) -> None:
    """`serve --replicas N`: the replica set until stopped; nginx dying is an error with its log tail."""
    ports = int(serving["http_port"]), int(serving["grpc_port"])
    with ReplicaSet(version, lambda v: cpu_serving_configs(v, serving), run_dir, replicas, *ports) as replica_set:
        announce(
            f"serving {version.name} v{version.version} on {replicas} replicas behind nginx: http "
            f"{replica_set.http_url}  grpc {replica_set.grpc_url}  (Ctrl-C stops)"
        )
        while not stop.wait(1.0):
            process = replica_set.nginx.process
            if process is None or process.poll() is not None:
                raise FulqrunMLError(f"nginx exited:\n{replica_set.nginx.log_tail()}")
    announce("server stopped")


def sync_live_server(change: AliasChange, models_dir: Path, serving: Mapping[str, Any]) -> str | None:
    """After the production alias moves, make a running `fulqrun-ml serve` on this machine serve the new version.

    Triton loads the new version, then retires the old one once its in-flight requests finish. Returns what
    happened, for the user; None when the change does not concern a live server (another alias, an unset one)."""
    if change.alias != "production" or change.to_version is None:
        return None
    run_dir = Path(models_dir) / REPLICA_RUN_DIR
    replica_state = live_replica_state(run_dir)
    if replica_state is not None:  # `serve --replicas N` runs: roll the promotion out one replica at a time
        version = get_version(models_dir, change.name, change.to_version)
        count = roll_out_to_state(run_dir, replica_state, version, cpu_serving_configs(version, serving))
        return f"{count} replicas behind {replica_state['http']} now serve {change.name} v{change.to_version}"
    url = f"127.0.0.1:{int(serving['http_port'])}"
    try:
        live = requests.get(f"http://{url}/v2/health/live", timeout=10).ok
    except requests.RequestException:
        live = False
    if not live:
        return f"no live server at {url}; the next `fulqrun-ml serve` serves v{change.to_version}"
    version = get_version(models_dir, change.name, change.to_version)
    controller = ModelController(url, TritonRepositoryBuilder(Path(models_dir) / CPU_REPOSITORY))
    try:
        for config in cpu_serving_configs(version, serving):
            controller.deploy(version, config)
    finally:
        controller.close()
    return f"live server at {url} now serves {change.name} v{change.to_version}"
