"""ResNet (Gorishniy et al. 2021): shapes, the block's residual form, the unknown category, gradients, export
parity, bad config. Everything else (task x backbone training, the leaderboard) reaches it through its YAML."""

import numpy as np
import pytest
import torch

from fulqrun_ml.export.onnx_export import PARITY_ATOL, check_parity, export_onnx, onnx_probabilities
from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.resnet import ResNet
from fulqrun_ml.tasks.binary import predict_probabilities
from tests.unit.tabular_data import SPEC, fit_briefly, frame

SMALL = {"d": 16, "d_hidden_factor": 2, "n_blocks": 2}


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_logits_have_one_row_per_record(n_outputs):
    net = ResNet(4, [3, 5], n_outputs=n_outputs, **SMALL).eval()
    out = net(continuous=torch.randn(7, 4), categorical=torch.randint(0, 3, (7, 2)))
    assert out.shape == (7, n_outputs) and torch.isfinite(out).all()


def test_works_without_categorical_columns():
    net = ResNet(3, [], **SMALL).eval()
    assert net(continuous=torch.randn(5, 3), categorical=torch.zeros(5, 0, dtype=torch.long)).shape == (5, 1)


def test_blocks_are_residual_and_the_head_is_batchnorm_relu_linear():
    torch.manual_seed(0)
    net = ResNet(3, [4], d=8, d_hidden_factor=1.5, n_blocks=3, hidden_dropout=0.0).eval()
    assert len(net.blocks) == 3 and net.blocks[0].linear_in.out_features == 12
    x = torch.randn(6, 8)
    block = net.blocks[0]
    with torch.no_grad():
        branch = block.linear_out(torch.relu(block.linear_in(block.norm(x))))
        torch.testing.assert_close(block(x), x + branch)
        block.linear_out.weight.zero_()
        block.linear_out.bias.zero_()
        torch.testing.assert_close(block(x), x)  # a zeroed branch is the identity
    head = net.head
    assert isinstance(head.norm, torch.nn.BatchNorm1d) and isinstance(head.activation, torch.nn.ReLU)
    assert head.linear.out_features == 1


def test_unknown_category_uses_its_own_row():
    torch.manual_seed(0)
    net = ResNet(2, [4, 3], hidden_dropout=0.0, **SMALL).eval()
    cont = torch.randn(5, 2)
    unknown = net(continuous=cont, categorical=torch.zeros(5, 2, dtype=torch.long))
    known = net(continuous=cont, categorical=torch.ones(5, 2, dtype=torch.long))
    assert torch.isfinite(unknown).all() and not torch.allclose(unknown, known)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = ResNet(3, [4, 3], **SMALL)
    net(continuous=torch.randn(64, 3), categorical=torch.randint(0, 3, (64, 2))).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_export_matches_pytorch_within_parity_tolerance():
    torch.manual_seed(0)
    fitted = SPEC.fit(frame())
    net = fit_briefly(ResNet(2, fitted.cardinalities, **SMALL), fitted.encode(frame()))
    rows = frame(200, seed=1).assign(stage=lambda f: np.where(f.index % 5 == 0, "never-seen", f["stage"]))
    probs = predict_probabilities(net, fitted.encode(rows))
    assert probs.std() > 0.01  # the check compares a model that actually separates rows
    graph = export_onnx(net, fitted)
    assert check_parity(graph, probs, fitted, rows) <= PARITY_ATOL
    np.testing.assert_allclose(onnx_probabilities(graph, fitted, rows.head(1)), probs[:1], atol=PARITY_ATOL)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"d": 0}, "d"), ({"n_blocks": 0}, "n_blocks"), ({"d_hidden_factor": 0.0}, "d_hidden_factor")],
)
def test_impossible_settings_name_the_parameter(kwargs, parameter):
    with pytest.raises(ModelConfigError) as info:
        ResNet(2, [3], **kwargs)
    assert info.value.parameter == parameter
