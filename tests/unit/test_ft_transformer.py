"""FT-Transformer: shapes, the unknown category, gradients, export parity, bad config."""

import numpy as np
import pytest
import torch

from fulqrun_ml.export.onnx_export import PARITY_ATOL, check_parity, export_onnx, onnx_probabilities
from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.ft_transformer import FTTransformer
from fulqrun_ml.tasks.binary import predict_probabilities
from tests.unit.tabular_data import SPEC, fit_briefly, frame

SMALL = {"d_token": 16, "n_layers": 2, "n_heads": 2}


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_logits_have_one_row_per_record(n_outputs):
    net = FTTransformer(4, [3, 5], n_outputs=n_outputs, **SMALL).eval()
    out = net(continuous=torch.randn(7, 4), categorical=torch.randint(0, 3, (7, 2)))
    assert out.shape == (7, n_outputs) and torch.isfinite(out).all()


def test_works_without_categorical_columns():
    net = FTTransformer(3, [], **SMALL).eval()
    assert net(continuous=torch.randn(5, 3), categorical=torch.zeros(5, 0, dtype=torch.long)).shape == (5, 1)


def test_unknown_category_uses_its_own_row_per_column():
    torch.manual_seed(0)
    net = FTTransformer(2, [4, 3], dropout=0.0, **SMALL).eval()
    cont = torch.randn(5, 2)
    unknown = net(continuous=cont, categorical=torch.zeros(5, 2, dtype=torch.long))
    known = net(continuous=cont, categorical=torch.ones(5, 2, dtype=torch.long))
    assert torch.isfinite(unknown).all() and not torch.allclose(unknown, known)
    # Column offsets: index 0 of the second column is its own row, not the first column's index 4.
    tokens = net.categorical(torch.tensor([[0, 0], [1, 0]]))
    assert not torch.allclose(tokens[0, 0], tokens[0, 1]) and torch.allclose(tokens[0, 1], tokens[1, 1])


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = FTTransformer(3, [4, 3], **SMALL)
    net(continuous=torch.randn(64, 3), categorical=torch.randint(0, 3, (64, 2))).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_export_matches_pytorch_within_parity_tolerance():
    torch.manual_seed(0)
    fitted = SPEC.fit(frame())
    net = fit_briefly(FTTransformer(2, fitted.cardinalities, **SMALL), fitted.encode(frame()))
    rows = frame(200, seed=1).assign(region=lambda f: np.where(f.index % 5 == 0, "never-seen", f["region"]))
    probs = predict_probabilities(net, fitted.encode(rows))
    assert probs.std() > 0.01  # the check compares a model that actually separates rows
    graph = export_onnx(net, fitted)
    assert check_parity(graph, probs, fitted, rows) <= PARITY_ATOL
    np.testing.assert_allclose(onnx_probabilities(graph, fitted, rows.head(1)), probs[:1], atol=PARITY_ATOL)


def test_heads_must_divide_the_token_width():
    with pytest.raises(ModelConfigError, match="n_heads") as info:
        FTTransformer(2, [3], d_token=10, n_heads=4)
    assert info.value.parameter == "d_token"
