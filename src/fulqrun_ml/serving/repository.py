"""Generate a Triton model repository from a published model version.

`config.pbtxt` is never hand-written: a typed `TritonModelConfig` becomes Triton's own protobuf
(`tritonclient.grpc.model_config_pb2.ModelConfig`), so a wrong field name or type fails here, not in the
server. One description yields both variants:
  python-ort   CPU hosts: the Python backend runs `model.py` (template in serving/python_ort/) with
               onnxruntime; validation errors name the field.
  onnxruntime  GPU hosts running the NGC Triton container: platform `onnxruntime_onnx`, KIND_GPU
               instances, same model.onnx, same inputs and outputs.

Layout (asserted by tests): <repo>/<model>/config.pbtxt and <repo>/<model>/<version>/model.onnx.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from fulqrun_ml.project import TEMPLATE_DIR
from fulqrun_ml.registry.store import ModelVersion

Variant = Literal["python-ort", "onnxruntime"]
VARIANTS: tuple[Variant, ...] = ("python-ort", "onnxruntime")
DTYPES = {"float32": pb.TYPE_FP32, "string": pb.TYPE_STRING, "int64": pb.TYPE_INT64}
VERSION_FILES = ("model.onnx", "feature_spec.json")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of DTYPES
    dims: tuple[int, ...] = (1,)  # without the batch dimension (max_batch_size > 0)


@dataclass(frozen=True)
class TritonModelConfig:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    variant: Variant = "python-ort"
    max_batch_size: int = 1024
    max_queue_delay_microseconds: int = 200
    preferred_batch_sizes: tuple[int, ...] = ()
    instance_count: int = 1
    parameters: dict[str, str] = field(default_factory=dict)

    def to_proto(self) -> pb.ModelConfig:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown Triton variant '{self.variant}'; choose one of {VARIANTS}")
        config = pb.ModelConfig(name=self.name, max_batch_size=self.max_batch_size)
        if self.variant == "python-ort":
            config.backend = "python"
        else:
            config.platform = "onnxruntime_onnx"
        for spec, target in [(s, config.input) for s in self.inputs] + [(s, config.output) for s in self.outputs]:
            tensor = target.add()
            tensor.name = spec.name
            tensor.data_type = DTYPES[spec.dtype]
            tensor.dims.extend(spec.dims)
        config.dynamic_batching.max_queue_delay_microseconds = self.max_queue_delay_microseconds
        config.dynamic_batching.preferred_batch_size.extend(
            b for b in self.preferred_batch_sizes if b <= self.max_batch_size
        )
        group = config.instance_group.add()
        group.count = self.instance_count
        group.kind = pb.ModelInstanceGroup.KIND_CPU if self.variant == "python-ort" else pb.ModelInstanceGroup.KIND_GPU
        config.version_policy.latest.num_versions = 1
        for key, value in self.parameters.items():
            config.parameters[key].string_value = str(value)
        return config

    def to_pbtxt(self) -> str:
        return text_format.MessageToString(self.to_proto())


def config_for_version(
    version: ModelVersion,
    variant: Variant = "python-ort",
    max_batch_size: int = 1024,
    max_queue_delay_microseconds: int = 200,
    preferred_batch_sizes: tuple[int, ...] = (),
    instance_count: int = 1,
    ort_intra_op_threads: int = 1,
) -> TritonModelConfig:
    """The Triton description of a version, from the inputs/outputs recorded in its metadata."""
    meta = version.metadata
    parameters = {"ort_intra_op_threads": str(ort_intra_op_threads)} if variant == "python-ort" else {}
    return TritonModelConfig(
        name=version.name,
        inputs=tuple(TensorSpec(i["name"], i["dtype"]) for i in meta["inputs"]),
        outputs=tuple(TensorSpec(o["name"], o["dtype"]) for o in meta["outputs"]),
        variant=variant,
        max_batch_size=max_batch_size,
        max_queue_delay_microseconds=max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(preferred_batch_sizes),
        instance_count=instance_count,
        parameters=parameters,
    )


class TritonRepositoryBuilder:
    """Writes <repo>/<model>/ for a version; replaces whatever was there for that model."""

    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository)

    def add(self, version: ModelVersion, config: TritonModelConfig) -> Path:
        model_dir = self.repository / config.name
        staging = self.repository / f".staging-{config.name}"
        shutil.rmtree(staging, ignore_errors=True)
        version_dir = staging / str(version.version)
        version_dir.mkdir(parents=True)
        for name in VERSION_FILES:
            shutil.copy2(version.path / name, version_dir / name)
        if config.variant == "python-ort":
            shutil.copy2(TEMPLATE_DIR / "python_ort" / "model.py", version_dir / "model.py")
        (staging / "config.pbtxt").write_text(config.to_pbtxt())
        shutil.rmtree(model_dir, ignore_errors=True)
        staging.rename(model_dir)
        return model_dir
