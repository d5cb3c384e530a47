"""The deal-win LightningModule for the fused model: `BinaryClassificationTask` with sequence tensors passed on.

Loss, metrics, optimiser and scheduler are the tabular task's own (inherited, not copied), so a fused run and
a tabular run differ only in what the network sees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fulqrun_ml.tasks.binary import BinaryClassificationTask
from fulqrun_ml.tasks.calibration import calibrator_from_record

TABULAR_INPUTS = ("continuous", "categorical")
SEQUENCE_INPUTS = ("event_type", "channel", "delta_days", "age_days", "direction")


def sequence_tensors(batch: dict[str, torch.Tensor], trim: bool = False) -> dict[str, torch.Tensor]:
    """The batch's sequence inputs; with `trim`, leading columns that are padding in every row are dropped.

    Trimming is exact because the encoder ignores padding and counts positions from the newest event; it
    makes a batch of short histories (most deals have < 20 touches) cost ~L=20 instead of max_len."""
    inputs = {k: batch[k] for k in SEQUENCE_INPUTS if k in batch}
    if trim and "event_type" in inputs and inputs["event_type"].shape[1] > 1:
        used = int((inputs["event_type"] != 0).sum(dim=1).max().clamp(min=1))
        inputs = {k: v[:, -used:] for k, v in inputs.items()}
    return inputs


def fusion_inputs(batch: dict[str, torch.Tensor], trim: bool = False) -> dict[str, torch.Tensor]:
    """The fused network's keyword inputs (its batch keys and graph inputs): the tabular tensors and the
    sequence fields, trimmed as in `sequence_tensors`; other batch keys (target, length) stay behind."""
    return {**{k: batch[k] for k in TABULAR_INPUTS}, **sequence_tensors(batch, trim=trim)}


class SequenceFusionTask(BinaryClassificationTask):
    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(**fusion_inputs(batch, trim=True))
        return logits, F.binary_cross_entropy_with_logits(logits, batch["target"])


def predict_sequence_logits(net: nn.Module, arrays: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Raw logits on encoded tabular + sequence arrays (inference mode, batched to bound memory)."""
    net.eval()
    n = len(arrays["continuous"])
    out = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = {k: torch.from_numpy(np.asarray(v[start : start + batch_size])) for k, v in arrays.items()}
            logits = net(**fusion_inputs(batch, trim=True))
            out.append(logits.squeeze(-1).float().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def predict_sequence_probabilities(
    net: nn.Module, arrays: dict[str, np.ndarray], calibration: dict[str, Any] | None = None
) -> np.ndarray:
    """Probabilities through the run's calibration record (none: the raw sigmoid); the PyTorch side of the
    export parity check."""
    logits = torch.from_numpy(predict_sequence_logits(net, arrays)).reshape(-1, 1)
    with torch.no_grad():
        return calibrator_from_record(calibration)(logits).reshape(-1).numpy()
