"""MLP with numeric embeddings: shapes, the unknown category, gradients, export parity, bad config."""

import numpy as np
import pytest
import torch

from fulqrun_ml.export.onnx_export import PARITY_ATOL, check_parity, export_onnx
from fulqrun_ml.models.embeddings import ModelConfigError, PiecewiseLinearEmbeddings
from fulqrun_ml.models.mlp_plr import MLPPLR
from fulqrun_ml.tasks.binary import predict_probabilities
from tests.unit.tabular_data import SPEC, fit_briefly, frame

EMBEDDINGS = ["periodic", "piecewise_linear"]


@pytest.mark.parametrize("kind", EMBEDDINGS)
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_logits_have_one_row_per_record(kind, n_outputs):
    net = MLPPLR(4, [3, 5], numeric_embedding=kind, n_outputs=n_outputs).eval()
    out = net(continuous=torch.randn(7, 4), categorical=torch.randint(0, 3, (7, 2)))
    assert out.shape == (7, n_outputs) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", EMBEDDINGS)
def test_unknown_category_uses_its_own_row(kind):
    torch.manual_seed(0)
    net = MLPPLR(2, [4, 3], numeric_embedding=kind, dropout=0.0).eval()
    cont = torch.randn(5, 2)
    unknown = net(continuous=cont, categorical=torch.zeros(5, 2, dtype=torch.long))
    known = net(continuous=cont, categorical=torch.ones(5, 2, dtype=torch.long))
    assert torch.isfinite(unknown).all()
    assert not torch.allclose(unknown, known)


@pytest.mark.parametrize("kind", EMBEDDINGS)
def test_every_parameter_gets_a_gradient(kind):
    torch.manual_seed(0)
    net = MLPPLR(3, [4, 3], numeric_embedding=kind)
    net(continuous=torch.randn(64, 3) * 2, categorical=torch.randint(0, 3, (64, 2))).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_piecewise_linear_encoding_is_linear_inside_a_bin_and_extrapolates_outside():
    emb = PiecewiseLinearEmbeddings(1, d_embedding=2, n_bins=4, bin_range=2.0)  # edges -2, -1, 0, 1, 2
    x = torch.tensor([[-3.0], [-0.5], [0.0], [2.5]])
    expected = torch.tensor([[-1.0, 0, 0, 0], [1, 0.5, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1.5]])
    torch.testing.assert_close(emb.encode(x)[:, 0], expected)


@pytest.mark.parametrize("kind", EMBEDDINGS)
def test_export_matches_pytorch_within_parity_tolerance(kind):
    torch.manual_seed(0)
    fitted = SPEC.fit(frame())
    net = fit_briefly(MLPPLR(2, fitted.cardinalities, numeric_embedding=kind), fitted.encode(frame()))
    rows = frame(200, seed=1).assign(stage=lambda f: np.where(f.index % 5 == 0, "never-seen", f["stage"]))
    probs = predict_probabilities(net, fitted.encode(rows))
    assert probs.std() > 0.01  # the check compares a model that actually separates rows
    assert check_parity(export_onnx(net, fitted), probs, fitted, rows) <= PARITY_ATOL


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"numeric_embedding": "fourier"}, "numeric_embedding"),
        ({"frequency_init_scale": 0.0}, "frequency_init_scale"),
        ({"numeric_embedding": "piecewise_linear", "n_bins": 1}, "n_bins"),
    ],
)
def test_impossible_settings_name_the_parameter(kwargs, parameter):
    with pytest.raises(ModelConfigError, match=parameter) as info:
        MLPPLR(2, [3], **kwargs)
    assert info.value.parameter == parameter
