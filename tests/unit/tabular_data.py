"""A small two-numeric, two-categorical table and a fitted-enough network: shared by the model tests."""

import numpy as np
import pandas as pd
import torch

from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature

SPEC = FeatureSpec(
    numeric=(NumericFeature("amount", "money", log1p=True), NumericFeature("score", "a score")),
    categorical=(CategoricalFeature("stage", "stage"), CategoricalFeature("region", "region")),
)


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(10, 1, n),
            "score": rng.normal(3, 2, n),
            "stage": rng.choice(["a", "b", "c"], n),
            "region": rng.choice(["x", "y"], n),
        }
    )


def fit_briefly(net: torch.nn.Module, arrays: dict[str, np.ndarray], steps: int = 30) -> torch.nn.Module:
    """A few optimizer steps on a learnable target, so parity is checked on non-trivial weights."""
    cont, cat = torch.from_numpy(arrays["continuous"]), torch.from_numpy(arrays["categorical"])
    target = ((cont[:, 1] > 0) ^ (cat[:, 0] == 2)).float()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(cont, cat).squeeze(-1), target).backward()
        opt.step()
    return net.eval()
