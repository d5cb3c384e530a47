"""Generate a Triton model repository from a published model version.

`config.pbtxt` is never hand-written: a typed `TritonModelConfig` becomes Triton's own protobuf
(`tritonclient.grpc.model_config_pb2.ModelConfig`), so a wrong field name or type fails here, not in the
server. One description (the version's metadata.json) yields every variant:
  python-ort   CPU hosts, tabular models (one raw CRM column per input): the Python backend runs `model.py`
               (template in serving/python_ort/) with onnxruntime; validation errors name the field. Takes
               the named layout or the packed one (two tensors, serving/packed.py), both optional inputs.
  python-tensor  CPU hosts, tensor-input models (metadata inputs carry a `shape`: the revenue forecaster, the
               sequence fusion): the Python backend template in serving/python_tensor/ enforces
               `serving_spec.json` (shapes with named/variable axes, NaN/inf, index ranges), written next to
               model.onnx from the same metadata plus the files the version ships.
  onnxruntime  GPU hosts running the NGC Triton container: platform `onnxruntime_onnx`, KIND_GPU
               instances, same model.onnx, same inputs and outputs.
  tensorrt     GPU hosts, versions exported with `--tensorrt`: an ensemble `<name>` of
               `<name>_preprocess` (onnxruntime on CPU instances: raw columns -> encoded tensors) and
               `<name>_net` (platform `tensorrt_plan`, model.plan on the GPU); same public inputs and outputs.
               Those three configs are composed in `deploy.tensorrt_ensemble_configs`, with the rest of what
               each host serves.

Layout (asserted by tests): <repo>/<model>/config.pbtxt and <repo>/<model>/<version>/model.onnx.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from fulqrun_ml.project import TEMPLATE_DIR
from fulqrun_ml.registry.encryption import SUFFIX, EncryptionError, decrypt_to, encryption_provider
from fulqrun_ml.registry.key_material import ENCRYPTION_KEYS_ENV
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.integrity import REGISTRY_SIGNATURE, verify_registry_version
from fulqrun_ml.serving.nba_files import write_nba_companions
from fulqrun_ml.serving.packed import packed_columns
from fulqrun_ml.serving.tensor_rules import DTYPE_NAMES, metadata_shape, serving_spec

Variant = Literal[
    "python-ort",
    "python-tensor",
    "python-by-id",  # `<name>_by_id`: ids -> Redis features -> `<name>` (BLS); composed in serving/by_id.py
    "python-nba",  # `<name>_actions`: deal state -> top-k next best actions; composed in serving/nba.py
    "onnxruntime",
    "onnxruntime-cpu",
    "tensorrt_plan",
    "ensemble",
]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
# Python-backend variants -> their model.py template directory under TEMPLATE_DIR.
PYTHON_TEMPLATES = {v: v.replace("-", "_") for v in ("python-ort", "python-tensor", "python-by-id", "python-nba")}
# The prediction log's spool writer (TEMPLATE_DIR/prediction_spool.py), copied next to every Python model.py;
# the variants that log (set `prediction_log_dir`) when `config_for_version` is given a `prediction_log`.
SPOOL_TEMPLATE = "prediction_spool.py"
# The faster BYTES deserializer the stub uses for the python-ort backend (TEMPLATE_DIR/triton_bytes.py, why there).
BYTES_TEMPLATE = "triton_bytes.py"
LOGGING_VARIANTS = ("python-ort", "python-tensor")
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "onnxruntime-cpu": "onnxruntime_onnx", "tensorrt_plan": "tensorrt_plan"}
GPU_VARIANTS = ("onnxruntime", "tensorrt_plan")
DTYPES = dict(zip(DTYPE_NAMES, (pb.TYPE_FP32, pb.TYPE_STRING, pb.TYPE_INT64), strict=True))
# (file in the registry version, file in the Triton version directory)
VERSION_FILES = (("model.onnx", "model.onnx"), ("feature_spec.json", "feature_spec.json"))
# Files a tensor-input version may ship that say what its inputs mean; copied when present.
TENSOR_COMPANIONS = ("feature_spec.json", "sequence_vocab.json", "series_index.json")
SERVING_SPEC_FILE = "serving_spec.json"


@dataclass(frozen=True)
class EnsembleStep:
    """One model of an ensemble; maps are {step tensor: ensemble tensor}."""

    model_name: str
    input_map: dict[str, str]
    output_map: dict[str, str]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of DTYPES
    dims: tuple[int, ...] = (1,)  # without the batch dimension (max_batch_size > 0); -1 = variable
    # What the model sees instead of `dims` (Triton's reshape): `()` for a graph input of shape [batch] only,
    # because a batched Triton tensor needs at least one dim, so clients send [batch, 1].
    reshape: tuple[int, ...] | None = None
    optional: bool = False  # a raw-record model's named and packed layouts (serving/packed.py) are alternatives


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
    # Versions Triton keeps loaded; empty means "the newest one". Two versions serve an A/B split.
    served_versions: tuple[int, ...] = ()
    # GPU hosts: let onnxruntime hand the network to TensorRT (FP16); the string LabelEncoders stay on the
    # CPU provider, which onnxruntime partitions automatically.
    tensorrt_accelerator: bool = False
    ensemble_steps: tuple[EnsembleStep, ...] = ()
    version_files: tuple[tuple[str, str], ...] = VERSION_FILES

    def to_proto(self) -> pb.ModelConfig:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown Triton variant '{self.variant}'; choose one of {VARIANTS}")
        if (self.variant == "ensemble") != bool(self.ensemble_steps):
            raise ValueError("an ensemble needs steps, and only an ensemble has steps")
        config = pb.ModelConfig(name=self.name, max_batch_size=self.max_batch_size)
        if self.variant in PYTHON_TEMPLATES:
            config.backend = "python"
        else:
            config.platform = PLATFORMS.get(self.variant, self.variant)
        for spec, target in [(s, config.input) for s in self.inputs] + [(s, config.output) for s in self.outputs]:
            tensor = target.add()
            tensor.name = spec.name
            tensor.data_type = DTYPES[spec.dtype]
            tensor.dims.extend(spec.dims)
            if spec.optional:
                tensor.optional = True
            if spec.reshape is not None:
                tensor.reshape.SetInParent()  # an empty shape must still be present
                tensor.reshape.shape.extend(spec.reshape)
        if self.variant == "ensemble":  # the steps batch and schedule themselves
            for step in self.ensemble_steps:
                proto_step = config.ensemble_scheduling.step.add(model_name=step.model_name, model_version=-1)
                proto_step.input_map.update(step.input_map)
                proto_step.output_map.update(step.output_map)
        else:
            config.dynamic_batching.max_queue_delay_microseconds = self.max_queue_delay_microseconds
            config.dynamic_batching.preferred_batch_size.extend(
                b for b in self.preferred_batch_sizes if b <= self.max_batch_size
            )
            group = config.instance_group.add()
            group.count = self.instance_count
            on_gpu = self.variant in GPU_VARIANTS
            group.kind = pb.ModelInstanceGroup.KIND_GPU if on_gpu else pb.ModelInstanceGroup.KIND_CPU
        if self.served_versions:
            config.version_policy.specific.versions.extend(sorted(set(self.served_versions)))
        else:
            config.version_policy.latest.num_versions = 1
        for key, value in self.parameters.items():
            config.parameters[key].string_value = str(value)
        if self.tensorrt_accelerator:
            if self.variant != "onnxruntime":
                raise ValueError("the TensorRT accelerator applies to the onnxruntime (GPU host) variant only")
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
            accelerator.name = "tensorrt"
            accelerator.parameters["precision_mode"] = "FP16"
            accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
        return config

    def to_pbtxt(self) -> str:
        return text_format.MessageToString(self.to_proto())


def is_tensor_model(metadata: dict[str, Any]) -> bool:
    """True when the version's inputs are tensors (a `shape` in metadata), not one raw column per record. Only
    inputs decide: a raw-column model may still return a shaped output (survival: `close_probability` [N, K])."""
    return any("shape" in entry for entry in metadata["inputs"])


def column_model_output(entry: dict[str, Any]) -> TensorSpec:
    """An output of a raw-column model served by python-ort, whose model.py hands every output back as
    [rows, width]: the metadata's axes after the batch (1 for an output of shape [batch] or none recorded),
    no reshape (the Python backend, not the graph, shapes it)."""
    dims = tuple(axis if isinstance(axis, int) else -1 for axis in metadata_shape(entry)[1:]) or (1,)
    if entry["dtype"] not in DTYPES:
        raise ValueError(f"tensor '{entry['name']}': dtype '{entry['dtype']}' is not one of {sorted(DTYPES)}")
    return TensorSpec(entry["name"], entry["dtype"], dims)


def cpu_variant(version: ModelVersion) -> Variant:
    """The Python-backend variant that serves this version on a CPU host."""
    return "python-tensor" if is_tensor_model(version.metadata) else "python-ort"


def tensor_spec(entry: dict[str, Any]) -> TensorSpec:
    """The Triton description of one metadata input/output (batch axis dropped; variable axes -1)."""
    dims = tuple(axis if isinstance(axis, int) else -1 for axis in metadata_shape(entry)[1:])
    if entry["dtype"] not in DTYPES:
        raise ValueError(f"tensor '{entry['name']}': dtype '{entry['dtype']}' is not one of {sorted(DTYPES)}")
    if not dims:  # [batch] only: clients send [batch, 1], the graph gets [batch]
        return TensorSpec(entry["name"], entry["dtype"], (1,), reshape=())
    return TensorSpec(entry["name"], entry["dtype"], dims)


def config_for_version(
    version: ModelVersion,
    variant: Variant = "python-ort",
    max_batch_size: int = 1024,
    max_queue_delay_microseconds: int = 200,
    preferred_batch_sizes: tuple[int, ...] = (),
    instance_count: int = 1,
    ort_intra_op_threads: int = 1,
    reasons_top_k: int = 0,
    served_versions: tuple[int, ...] = (),
    tensorrt_accelerator: bool = False,
    prediction_log: Mapping[str, Any] | None = None,
) -> TritonModelConfig:
    """The Triton description of a version, from the inputs/outputs recorded in its metadata.

    `reasons_top_k > 0` describes the `<name>_reasons` endpoint (python-ort only): same graph, plus a
    `reasons` output with the top fields pushing each probability up and down. Tensor-input versions
    (forecaster, sequence fusion) take `python-tensor` on CPU hosts; their shapes come from the metadata.
    A forecaster's quantile levels travel as the config parameter `quantiles` (JSON), so clients can label
    the [B, H, Q] output without reading the registry; a survival model's bin edges likewise as `bin_edges`
    (the right edge of bin k labels `close_probability[:, k]`).

    `prediction_log` ({"spool_dir", "fsync", "rotate_bytes"}; python-ort and python-tensor) makes the backend
    append every answered request to a spool file under `spool_dir` (serving/prediction_spool.py)."""
    meta = version.metadata
    tensor_model = is_tensor_model(meta)
    if tensor_model and variant == "python-ort":
        raise ValueError(
            f"{version.name} takes tensor inputs ({', '.join(i['name'] for i in meta['inputs'])}): "
            "serve it with the python-tensor variant"
        )
    if not tensor_model and variant == "python-tensor":
        raise ValueError(f"{version.name} takes raw CRM columns: serve it with the python-ort variant")
    output_spec = column_model_output if variant == "python-ort" else tensor_spec
    outputs = tuple(output_spec(o) for o in meta["outputs"])
    parameters = {"ort_intra_op_threads": str(ort_intra_op_threads)} if variant in PYTHON_TEMPLATES else {}
    if "quantiles" in meta:
        parameters["quantiles"] = json.dumps([float(q) for q in meta["quantiles"]])
    if "bin_edges" in meta:
        parameters["bin_edges"] = json.dumps([float(e) for e in meta["bin_edges"]])
    if prediction_log and variant in LOGGING_VARIANTS:
        parameters["prediction_log_dir"] = str(Path(prediction_log["spool_dir"]).resolve())
        parameters["prediction_log_fsync"] = str(bool(prediction_log.get("fsync", False))).lower()
        if prediction_log.get("rotate_bytes"):
            parameters["prediction_log_rotate_bytes"] = str(int(prediction_log["rotate_bytes"]))
    name = version.name
    if reasons_top_k:
        if variant != "python-ort":
            raise ValueError("reasons are computed by the Python backend for tabular models: use python-ort")
        name = f"{version.name}_reasons"
        outputs += (TensorSpec("reasons", "string"),)
        parameters["reasons_top_k"] = str(reasons_top_k)
    inputs = tuple(tensor_spec(i) for i in meta["inputs"])
    packed = packed_columns(meta) if variant == "python-ort" else None
    if packed is not None:  # both layouts, each optional; the backend refuses a request holding neither or both
        inputs = tuple(TensorSpec(t.name, t.dtype, t.dims, t.reshape, optional=True) for t in inputs)
        inputs += tuple(TensorSpec(name, dtype, (width,), optional=True) for name, dtype, width in packed.inputs())
        parameters.update(packed.parameters())
    version_files = VERSION_FILES
    if tensor_model:
        present = [f for f in TENSOR_COMPANIONS if (version.path / f).is_file()]
        version_files = (("model.onnx", "model.onnx"), *((f, f) for f in present))
    return TritonModelConfig(
        name=name,
        inputs=inputs,
        outputs=outputs,
        served_versions=tuple(served_versions),
        tensorrt_accelerator=tensorrt_accelerator,
        variant=variant,
        max_batch_size=max_batch_size,
        max_queue_delay_microseconds=max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(preferred_batch_sizes),
        instance_count=instance_count,
        parameters=parameters,
        version_files=version_files,
    )


class TritonRepositoryBuilder:
    """Writes <repo>/<model>/ for one or more versions; replaces whatever was there for that model.

    The model directory is assembled under a staging name and swapped in with renames, so a server in
    explicit model-control mode that is told to (re)load the model reads a complete directory."""

    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository)

    def add(self, versions: ModelVersion | Sequence[ModelVersion], config: TritonModelConfig) -> Path:
        versions = [versions] if isinstance(versions, ModelVersion) else list(versions)
        model_dir = self.repository / config.name
        staging = self.repository / f".staging-{config.name}"
        retired = self.repository / f".retired-{config.name}"
        for leftover in (staging, retired):
            shutil.rmtree(leftover, ignore_errors=True)
        for version in versions:
            signature = verify_registry_version(version)  # refuses a tampered or unsigned version when signing is on
            version_dir = staging / str(version.version)
            version_dir.mkdir(parents=True)
            if signature is not None:
                shutil.copy2(signature, version_dir / REGISTRY_SIGNATURE)
            for source, target in config.version_files:
                copy_version_file(version, source, version_dir / target, config.name)
            if config.variant in PYTHON_TEMPLATES:
                shutil.copy2(TEMPLATE_DIR / PYTHON_TEMPLATES[config.variant] / "model.py", version_dir / "model.py")
                shutil.copy2(TEMPLATE_DIR / SPOOL_TEMPLATE, version_dir / SPOOL_TEMPLATE)
            if config.variant == "python-ort":
                shutil.copy2(TEMPLATE_DIR / BYTES_TEMPLATE, version_dir / BYTES_TEMPLATE)
            if config.variant == "python-nba":
                write_nba_companions(version_dir, version.metadata)
            if config.variant == "python-tensor":
                spec = serving_spec(version)
                _check_interface(spec, config)
                (version_dir / SERVING_SPEC_FILE).write_text(json.dumps(spec, indent=2))
        (staging / "config.pbtxt").write_text(config.to_pbtxt())
        if model_dir.exists():
            model_dir.rename(retired)
        staging.rename(model_dir)
        shutil.rmtree(retired, ignore_errors=True)
        return model_dir


def copy_version_file(version: ModelVersion, source: str, target: Path, model: str) -> None:
    """Copy one registry file into the Triton version directory; a file encrypted at rest (`<source>.enc`,
    registry/encryption.py) is decrypted into it, since Triton loads plain files."""
    if (version.path / source).is_file():
        shutil.copy2(version.path / source, target)
    elif (version.path / (source + SUFFIX)).is_file():
        provider = encryption_provider()
        if provider is None:
            raise EncryptionError(
                f"{version.name} v{version.version}: {source} is encrypted; set {ENCRYPTION_KEYS_ENV}"
            )
        decrypt_to(version.path / (source + SUFFIX), target, provider)
    else:
        raise FileNotFoundError(f"{version.name} v{version.version} has no {source} for {model}")


def _check_interface(spec: dict[str, Any], config: TritonModelConfig) -> None:
    """Several versions share one config.pbtxt (A/B serving): each must have the inputs that config declares."""
    declared = [(t.name, t.dtype) for t in config.inputs]
    actual = [(rule["name"], rule["dtype"]) for rule in spec["inputs"]]
    if declared != actual:
        raise ValueError(
            f"{spec['model']} v{spec['version']} inputs {actual} differ from the config's {declared}; "
            "versions served together must take the same inputs"
        )
