"""The serving benchmark's repository: the published model's fast endpoint, as `fulqrun-ml serve` builds it,
next to its **identity** twin (same inputs, batching and instances; serving/identity/model.py echoes one input)
and the **one-tensor floor** (an identity whose only input is one FP32 tensor of as many values as the model has
fields, same batching and instances).

The identity is Triton's own cost for the same requests: the model/identity ratio is what our code costs. The
floor is what the transport costs at the least, whatever the request layout: the model/floor ratio is what our
code AND our layout cost, independent of how fast the machine is that day. `check_answers` makes sure each
really answers, correctly shaped, before any load is measured.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import requests
from omegaconf import OmegaConf

from fulqrun_ml.benchmarks.serving_report import FLOOR, FLOOR_INPUT, IDENTITY
from fulqrun_ml.errors import FulqrunMLError, ServingError
from fulqrun_ml.project import CONFIG_DIR, TEMPLATE_DIR
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.packed import PACKED_NUMERIC
from fulqrun_ml.serving.repository import TensorSpec, TritonModelConfig, TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer

SERVING_CONFIG = CONFIG_DIR / "serving" / "cpu.yaml"


def load_serving_config(path: Path = SERVING_CONFIG) -> Mapping[str, Any]:
    """The `serving` config group `fulqrun-ml serve` uses (configs/serving/cpu.yaml), so the benchmark builds its
    repository with `serving.deploy`, exactly as what is served."""
    return OmegaConf.load(path)


def identity_config(model: TritonModelConfig, echo_input: str) -> TritonModelConfig:
    """The identity twin of `model`: same inputs, first output, batching and instances; echoes one input."""
    if echo_input not in {i.name for i in model.inputs}:
        raise FulqrunMLError(f"identity model: '{echo_input}' is not an input of '{model.name}'")
    return _echo_twin(model, IDENTITY, model.inputs, echo_input)


def floor_config(model: TritonModelConfig, width: int) -> TritonModelConfig:
    """The one-tensor floor next to `model`: one FP32 input of `width` values, the model's first output,
    batching and instances; echoes the input's first column."""
    return _echo_twin(model, FLOOR, (TensorSpec(FLOOR_INPUT, "float32", (width,)),), FLOOR_INPUT)


def _echo_twin(
    model: TritonModelConfig, name: str, inputs: tuple[TensorSpec, ...], echo_input: str
) -> TritonModelConfig:
    """An echo model served like `model` (first output, batching, instances): what Triton costs without it."""
    return TritonModelConfig(
        name=name,
        inputs=inputs,
        outputs=(TensorSpec(model.outputs[0].name, model.outputs[0].dtype),),
        variant="python-ort",
        max_batch_size=model.max_batch_size,
        max_queue_delay_microseconds=model.max_queue_delay_microseconds,
        preferred_batch_sizes=model.preferred_batch_sizes,
        instance_count=model.instance_count,
        parameters={"echo_input": echo_input},
    )


def add_identity_model(repository: Path, config: TritonModelConfig) -> Path:
    """<repo>/identity/config.pbtxt + <repo>/identity/1/model.py (template serving/identity/model.py)."""
    model_dir = Path(repository) / config.name
    shutil.rmtree(model_dir, ignore_errors=True)
    (model_dir / "1").mkdir(parents=True)
    shutil.copy2(TEMPLATE_DIR / "identity" / "model.py", model_dir / "1" / "model.py")
    (model_dir / "config.pbtxt").write_text(config.to_pbtxt())
    return model_dir


def build_bench_repository(
    version: ModelVersion,
    repository: Path,
    serving: Mapping[str, Any],
    layout: str = "packed",
    profile_path: Path | None = None,
) -> tuple[TritonModelConfig, TritonModelConfig, TritonModelConfig]:
    """The version's fast endpoint, as `fulqrun-ml serve` configures it, its identity twin for requests in
    `layout` (packed: it echoes the packed numeric tensor) and the one-tensor floor. `profile_path`: the model's
    backend writes a cProfile of its execute() there when it unloads."""
    model = cpu_serving_configs(version, serving)[0]
    if profile_path is not None:
        model = replace(model, parameters={**model.parameters, "profile_path": str(profile_path)})
    names = {i.name for i in model.inputs}
    if layout == "packed" and PACKED_NUMERIC in names:
        echo: str | None = PACKED_NUMERIC
    else:
        echo = next((i.name for i in model.inputs if i.dtype == model.outputs[0].dtype and i.dims == (1,)), None)
    if echo is None:
        raise FulqrunMLError(f"model '{model.name}' has no input of its output type to echo for the identity model")
    identity = identity_config(model, echo)
    floor = floor_config(model, len(version.metadata["inputs"]))
    TritonRepositoryBuilder(repository).add(version, model)
    add_identity_model(repository, identity)
    add_identity_model(repository, floor)
    return model, identity, floor


def check_answers(server: TritonServer, model: str, echo: str | None, output: str, body: bytes) -> None:
    """One HTTP request with the exact bytes wrk will send: it must be answered, one value per row; an identity
    (`echo` names its echoed input) must return that input's first column, the model a probability in [0, 1]."""
    sent = {i["name"]: np.asarray(i["data"], dtype=object).reshape(i["shape"]) for i in json.loads(body)["inputs"]}
    rows = next(iter(sent.values())).shape[0]
    reply = requests.post(f"http://{server.http_url}/v2/models/{model}/infer", data=body, timeout=30)
    if reply.status_code != 200:
        raise ServingError(f"model '{model}' refused the benchmark request: {reply.text[:500]}")
    values = next(o for o in reply.json()["outputs"] if o["name"] == output)["data"]
    if len(values) != rows:
        raise ServingError(f"model '{model}' answered {len(values)} values for {rows} rows")
    if echo is not None and not np.allclose(values, sent[echo][:, 0].astype(np.float32)):
        raise ServingError(f"the identity model '{model}' did not echo its input")
    if echo is None and not all(0.0 <= v <= 1.0 for v in values):
        raise ServingError(f"model '{model}' returned values outside [0, 1]")
