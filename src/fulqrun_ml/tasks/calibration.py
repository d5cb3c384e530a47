"""Post-hoc temperature scaling: one scalar T so that sigmoid(logit / T) is calibrated.

Why temperature and not isotonic by default: a single parameter cannot overfit a small calibration split,
keeps the ranking (AUC) unchanged, and exports as one Div node in the ONNX graph. It is fitted on the
validation split (later in time than training), never on the holdout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """Minimise validation log loss over log T with L-BFGS; returns T (> 0)."""
    z = torch.as_tensor(np.array(logits, dtype=np.float64))
    y = torch.as_tensor(np.array(labels, dtype=np.float64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
