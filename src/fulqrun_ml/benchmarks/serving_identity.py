"""The serving benchmark's repository: the published model's fast endpoint, as `fulqrun-ml serve` builds it,
next to its **identity** twin (same inputs, batching and instances; serving/identity/model.py echoes one input).

The identity is Triton's own floor for the same requests: the model/identity ratio is what our code costs,
independent of how fast the machine is that day. `check_answers` makes sure both really answer, correctly
shaped, before any load is measured.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import requests
from omegaconf import OmegaConf

from fulqrun_ml.benchmarks.serving_report import IDENTITY
from fulqrun_ml.errors import FulqrunMLError, ServingError
from fulqrun_ml.project import CONFIG_DIR, TEMPLATE_DIR
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.deploy import cpu_serving_configs
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
    return TritonModelConfig(
        name=IDENTITY,
        inputs=model.inputs,
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
    version: ModelVersion, repository: Path, serving: Mapping[str, Any]
) -> tuple[TritonModelConfig, TritonModelConfig]:
    """The version's fast endpoint, as `fulqrun-ml serve` configures it, and its identity twin."""
    model = cpu_serving_configs(version, serving)[0]
    echo = next((i.name for i in model.inputs if i.dtype == model.outputs[0].dtype), None)
    if echo is None:
        raise FulqrunMLError(f"model '{model.name}' has no input of its output type to echo for the identity model")
    identity = identity_config(model, echo)
    TritonRepositoryBuilder(repository).add(version, model)
    add_identity_model(repository, identity)
    return model, identity


def check_answers(server: TritonServer, model: str, identity: str, echo: str, output: str, body: bytes) -> None:
    """One HTTP request per model with the exact bytes wrk will send: both must answer, correctly shaped;
    the identity must return the echoed input and the model a probability in [0, 1]."""
    sent = {i["name"]: i["data"] for i in json.loads(body)["inputs"]}
    for name in (model, identity):
        reply = requests.post(f"http://{server.http_url}/v2/models/{name}/infer", data=body, timeout=30)
        if reply.status_code != 200:
            raise ServingError(f"model '{name}' refused the benchmark request: {reply.text[:500]}")
        values = next(o for o in reply.json()["outputs"] if o["name"] == output)["data"]
        if len(values) != len(sent[echo]):
            raise ServingError(f"model '{name}' answered {len(values)} values for {len(sent[echo])} rows")
        if name == identity and not np.allclose(values, np.asarray(sent[echo], dtype=np.float32)):
            raise ServingError("the identity model did not echo its input")
        if name == model and not all(0.0 <= v <= 1.0 for v in values):
            raise ServingError(f"model '{name}' returned values outside [0, 1]")
