"""GPU check: training throughput and inference latency of every backbone, GPU versus CPU, in one short run.

Two steps, because the lent GPU machine has torch + Lightning + onnxruntime but no Hydra, pandera or
W&B and no internet:

  prepare (here, full venv)   builds the default deal-win dataset once, saves the encoded train/val
                              arrays and each backbone's constructor config (read from configs/model/*.yaml,
                              the same files `fulqrun-ml train model=...` uses) and its network-only ONNX
                              graph under .gpu_check/ (git-ignored, small enough to travel).
  run (anywhere)              for each backbone: trains a fixed number of steps with Lightning on each
                              available device (GPU: bf16-mixed as configs/trainer/gpu.yaml; CPU: fp32) and
                              records samples/s and the final losses; then measures batch-1 and batch-1024
                              inference latency with torch on CUDA (eager and CUDA graphs), torch on CPU and
                              onnxruntime on CPU. Writes one JSON (machine info included).

`scripts/gpu_check.sh` is the single command the device tool runs. The CPU numbers in the same JSON are
the baseline measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fulqrun_ml.machine import machine_info  # noqa: E402
from fulqrun_ml.tasks.binary import BinaryClassificationTask  # noqa: E402

SEQUENCE_MODEL = "sequence_fusion"
SEQUENCE_MAX_LEN = 32  # as configs/experiment/deal_win_sequence_fusion.yaml
# Every tabular backbone the model group declares (`family: tabular`, as the leaderboard finds them), plus the fusion.
BACKBONES = (
    *sorted(
        p.stem
        for p in (REPO / "configs" / "model").glob("*.yaml")
        if yaml.safe_load(p.read_text()).get("family") == "tabular"
    ),
    SEQUENCE_MODEL,
)
INFERENCE_BATCHES = (1, 1024)


def net_kwargs(model_name: str) -> tuple[str, dict[str, Any]]:
    """The backbone's class path and constructor arguments from its Hydra model YAML."""
    config = dict(yaml.safe_load((REPO / "configs" / "model" / f"{model_name}.yaml").read_text())["net"])
    return config.pop("_target_"), config


def build_net(model_name: str, meta: dict[str, Any]) -> torch.nn.Module:
    """The backbone as `fulqrun-ml train model=<name>` builds it: YAML arguments + data-dependent sizes."""
    target, kwargs = net_kwargs(model_name)
    module, _, cls = target.rpartition(".")
    kwargs.update(meta.get("net_sizes", {}).get(model_name, {}))
    return getattr(importlib.import_module(module), cls)(
        n_continuous=meta["n_continuous"], cardinalities=meta["cardinalities"], **kwargs
    )


# ---------------------------------------------------------------- prepare (needs the project's full venv)


def prepare(out: Path, backbones: tuple[str, ...], overrides: tuple[str, ...] = ()) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from fulqrun_ml.export.onnx_export import export_network
    from fulqrun_ml.project import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *overrides])
    if SEQUENCE_MODEL in backbones:  # same snapshots and splits, plus each deal's activity sequence
        OmegaConf.set_struct(cfg, False)
        cfg.data._target_ = "fulqrun_ml.sequence.datamodule.DealWinSequenceDataModule"
        cfg.data.max_len = SEQUENCE_MAX_LEN
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split in ("train", "val"):
        encoded = spec.encode(datamodule.frames[split])
        arrays[f"{split}_continuous"] = encoded["continuous"]
        arrays[f"{split}_categorical"] = encoded["categorical"]
        arrays[f"{split}_target"] = datamodule.frames[split]["label"].to_numpy(dtype=np.float32)
        for key, values in getattr(datamodule, "sequences", {}).get(split, {}).items():
            arrays[f"{split}_{key}"] = values
    np.savez_compressed(out / "data.npz", **arrays)
    meta = {"n_continuous": len(spec.spec.numeric), "cardinalities": list(spec.cardinalities)}
    meta["sizes"] = datamodule.sizes
    if SEQUENCE_MODEL in backbones:
        meta["net_sizes"] = {SEQUENCE_MODEL: {**datamodule.vocabulary.sizes, "max_len": SEQUENCE_MAX_LEN}}
        meta["sequence_keys"] = sorted(datamodule.sequences["train"])
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    for name in backbones:
        if name != SEQUENCE_MODEL:  # its full graph takes sequence inputs; ORT timing covers the tabular nets
            net = build_net(name, meta).eval()
            (out / f"{name}.onnx").write_bytes(export_network(net, spec).SerializeToString())
    print(f"prepared {out}: {meta['sizes']}")


# ---------------------------------------------------------------- run (torch + Lightning + onnxruntime only)


class StepTimer(pl.Callback):
    """Wall time and loss of each training step after `warmup` steps (compilation, cuDNN autotune)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.started: float | None = None
        self.samples = 0
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, idx: int) -> None:
        if idx == self.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, idx: int) -> None:  # type: ignore[no-untyped-def]
        if idx >= self.warmup:
            self.samples += int(batch["target"].shape[0])
        self.losses.append(float(outputs["loss"]))

    def samples_per_s(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return self.samples / (time.perf_counter() - self.started) if self.started else float("nan")


class DictBatches(TensorDataset):
    """Whole batches as the dicts the tasks expect, indexed by a list of rows at once (as the deal-win
    datamodule does): per-row collation would cap throughput at the Python loop, not the device."""

    def __init__(self, named: dict[str, torch.Tensor]) -> None:
        super().__init__(*named.values())
        self.keys = list(named)

    def __getitem__(self, index: list[int]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return dict(zip(self.keys, super().__getitem__(torch.as_tensor(index)), strict=True))


def split_arrays(data: dict[str, np.ndarray], split: str, with_sequences: bool) -> dict[str, torch.Tensor]:
    keys = ["continuous", "categorical", "target"]
    keys += [k.removeprefix(f"{split}_") for k in data if k.startswith(f"{split}_")] if with_sequences else []
    return {k: torch.from_numpy(data[f"{split}_{k}"]) for k in dict.fromkeys(keys)}


def loader(
    data: dict[str, np.ndarray], split: str, batch_size: int, shuffle: bool, steps: int = 0, sequences: bool = False
) -> DataLoader:
    named = split_arrays(data, split, sequences)
    if steps:  # repeat the split so `steps` batches exist without restarting epochs mid-measurement
        repeats = -(-steps * batch_size // len(named["target"]))
        named = {k: t.repeat(repeats, *([1] * (t.dim() - 1))) for k, t in named.items()}
    dataset = DictBatches(named)
    rows = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(rows, batch_size, drop_last=shuffle), batch_size=None)


def train_throughput(
    name: str, meta: dict[str, Any], data: dict[str, np.ndarray], device: str, batch_size: int, steps: int
) -> dict[str, Any]:
    pl.seed_everything(0, workers=True)
    net = build_net(name, meta)
    sequences = name == SEQUENCE_MODEL
    task_class = BinaryClassificationTask
    if sequences:
        from fulqrun_ml.sequence.task import SequenceFusionTask as task_class
    task = task_class(net, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01))
    timer = StepTimer(warmup=min(10, steps // 5))
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if device == "cuda" else "32-true",
        max_steps=steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    started = time.perf_counter()
    trainer.fit(task, train_dataloaders=loader(data, "train", batch_size, True, steps, sequences))
    wall = time.perf_counter() - started
    throughput = timer.samples_per_s()
    validation = trainer.validate(task, dataloaders=loader(data, "val", 4096, False, 0, sequences), verbose=False)[0]
    return {
        "model": name,
        "device": device,
        "precision": trainer.precision,
        "batch_size": batch_size,
        "steps": steps,
        "samples_per_s": round(throughput, 1),
        "fit_seconds": round(wall, 2),
        "final_train_loss": round(statistics.fmean(timer.losses[-20:]), 4),
        "val_log_loss": round(float(validation["val/log_loss"]), 4),
        "val_auc": round(float(validation["val/auc"]), 4),
        "parameters": sum(p.numel() for p in net.parameters()),
    }


def time_calls(call: Callable[[], Any], iterations: int, sync: bool) -> dict[str, float]:
    """p50/p99 wall time of `call`; `sync` waits for the GPU so a CUDA call is timed end to end."""
    for _ in range(max(5, iterations // 10)):
        call()
    if sync:
        torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    times_ms = np.array(times) * 1e3
    return {f"p{q}_ms": round(float(np.percentile(times_ms, q)), 4) for q in (50, 99)}


def cuda_graph(net: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[Any, torch.Tensor]:
    """Capture one forward pass as a CUDA graph: one launch replays every kernel, the usual cure for small,
    launch-bound models. Returns the graph and its static output tensor."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):
            net(**inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        output = net(**inputs)
    return graph, output


def latency_at_batch(net: torch.nn.Module, onnx_path: Path, data: dict[str, np.ndarray], batch: int) -> dict[str, Any]:
    """Timings of one batch size on every engine available here, keyed by engine name."""
    import onnxruntime as ort

    rows = torch.from_numpy(np.arange(batch) % len(data["val_target"]))  # tiles small splits up to the batch
    with_sequences = getattr(net, "sequence", None) is not None  # tabular backbones take two tensors only
    inputs = {k: v[rows] for k, v in split_arrays(data, "val", with_sequences).items() if k != "target"}
    iterations = 300 if batch == 1 else 100
    timings: dict[str, Any] = {}
    with torch.inference_mode():
        timings["torch_cpu"] = time_calls(functools.partial(net, **inputs), iterations, False)
    if onnx_path.is_file():
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        feeds = {"continuous": inputs["continuous"].numpy(), "categorical": inputs["categorical"].numpy()}
        timings["onnxruntime_cpu"] = time_calls(functools.partial(session.run, None, feeds), iterations, False)
    if torch.cuda.is_available():
        gpu_net = copy.deepcopy(net).cuda().eval()
        on_gpu = {k: v.cuda() for k, v in inputs.items()}
        with torch.inference_mode():
            timings["torch_cuda"] = time_calls(functools.partial(gpu_net, **on_gpu), iterations, True)
            eager = gpu_net(**on_gpu)
        graph, static_out = cuda_graph(gpu_net, on_gpu)
        timings["torch_cuda_graph"] = time_calls(graph.replay, iterations, True)
        timings["torch_cuda_graph"]["max_abs_diff_vs_eager"] = float((static_out - eager).abs().max())
    return timings


def inference_latency(name: str, meta: dict[str, Any], data: dict[str, np.ndarray], prepared: Path) -> list[dict]:
    torch.manual_seed(0)
    net = build_net(name, meta).eval()
    rows = []
    for batch in INFERENCE_BATCHES:
        for engine, timing in latency_at_batch(net, prepared / f"{name}.onnx", data, batch).items():
            rows.append({"model": name, "engine": engine, "batch": batch, **timing})
            rows[-1]["rows_per_s"] = round(batch / (timing["p50_ms"] / 1e3), 1)
    return rows


def run(prepared: Path, out: Path, backbones: tuple[str, ...], gpu_steps: int, cpu_steps: int) -> dict[str, Any]:
    meta = json.loads((prepared / "meta.json").read_text())
    data = dict(np.load(prepared / "data.npz"))
    has_cuda = torch.cuda.is_available()
    training, inference = [], []
    for name in backbones:
        if has_cuda:
            for batch_size in (256, 4096):
                training.append(train_throughput(name, meta, data, "cuda", batch_size, gpu_steps))
                print(json.dumps(training[-1]), flush=True)
        training.append(train_throughput(name, meta, data, "cpu", 256, cpu_steps))
        print(json.dumps(training[-1]), flush=True)
        inference += inference_latency(name, meta, data, prepared)
        print(json.dumps(inference[-8:]), flush=True)
    report = {
        "what": "Lightning training throughput (fixed steps) and inference latency per backbone, GPU vs CPU",
        "machine": machine_info(
            gpu=torch.cuda.get_device_name(0) if has_cuda else None,
            torch=torch.__version__,
            torch_threads=torch.get_num_threads(),
        ),
        "data": meta["sizes"],
        "training": training,
        "inference": inference,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "run"])
    parser.add_argument("--prepared", type=Path, default=REPO / ".gpu_check")
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    parser.add_argument("--models", default=",".join(BACKBONES))
    parser.add_argument("--gpu-steps", type=int, default=300)
    parser.add_argument("--cpu-steps", type=int, default=60)
    parser.add_argument("--data-override", action="append", default=[], help="prepare: Hydra data override")
    args = parser.parse_args()
    backbones = tuple(m for m in args.models.split(",") if m)
    if args.step == "prepare":
        prepare(args.prepared, backbones, tuple(args.data_override))
    else:
        run(args.prepared, args.out, backbones, args.gpu_steps, args.cpu_steps)


if __name__ == "__main__":
    main()
