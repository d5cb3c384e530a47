"""TabM: shapes, members, the unknown category, gradients, export parity, bad config."""

import numpy as np
import pytest
import torch

from fulqrun_ml.export.onnx_export import PARITY_ATOL, check_parity, export_onnx, onnx_probabilities
from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.tabm import TabM
from fulqrun_ml.tasks.binary import predict_probabilities
from tests.unit.tabular_data import SPEC, fit_briefly, frame

SMALL = {"k": 4, "hidden_dims": (16, 16)}


@pytest.mark.parametrize("numeric_embedding", [None, "periodic", "piecewise_linear"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_forward_is_the_mean_of_the_members(numeric_embedding, n_outputs):
    net = TabM(4, [3, 5], numeric_embedding=numeric_embedding, n_outputs=n_outputs, **SMALL).eval()
    cont, cat = torch.randn(7, 4), torch.randint(0, 3, (7, 2))
    members = net.forward_members(continuous=cont, categorical=cat)
    assert members.shape == (7, 4, n_outputs)
    torch.testing.assert_close(net(continuous=cont, categorical=cat), members.mean(dim=1))


def test_members_start_different_and_share_the_weight_matrices():
    torch.manual_seed(0)
    net = TabM(4, [3], k=8, hidden_dims=(32, 32)).eval()
    members = net.forward_members(continuous=torch.randn(50, 4), categorical=torch.randint(0, 3, (50, 1)))[..., 0]
    spread = members.std(dim=1)  # across members, per row
    assert (spread > 1e-3).all()
    first = net.body[0]
    assert first.weight.shape == (4 + net.embeddings.output_dim, 32)  # one matrix for all members
    assert set(first.r.detach().abs().flatten().tolist()) == {1.0}  # ±1 signs, not all +1
    assert (first.r < 0).any() and (first.r > 0).any()


def test_unknown_category_uses_its_own_row():
    torch.manual_seed(0)
    net = TabM(2, [4, 3], dropout=0.0, **SMALL).eval()
    cont = torch.randn(5, 2)
    unknown = net(continuous=cont, categorical=torch.zeros(5, 2, dtype=torch.long))
    known = net(continuous=cont, categorical=torch.ones(5, 2, dtype=torch.long))
    assert torch.isfinite(unknown).all() and not torch.allclose(unknown, known)


def test_every_parameter_gets_a_gradient_from_the_per_member_loss():
    torch.manual_seed(0)
    net = TabM(3, [4, 3], **SMALL)
    members = net.forward_members(continuous=torch.randn(64, 3), categorical=torch.randint(0, 3, (64, 2)))
    target = torch.randint(0, 2, (64, 1, 1)).float().expand_as(members)
    torch.nn.functional.binary_cross_entropy_with_logits(members, target).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("numeric_embedding", [None, "periodic"])
def test_export_matches_pytorch_within_parity_tolerance(numeric_embedding):
    torch.manual_seed(0)
    fitted = SPEC.fit(frame())
    net = fit_briefly(
        TabM(2, fitted.cardinalities, numeric_embedding=numeric_embedding, **SMALL), fitted.encode(frame())
    )
    rows = frame(200, seed=1).assign(stage=lambda f: np.where(f.index % 5 == 0, "never-seen", f["stage"]))
    probs = predict_probabilities(net, fitted.encode(rows))
    assert probs.std() > 0.01  # the check compares a model that actually separates rows
    graph = export_onnx(net, fitted)
    assert check_parity(graph, probs, fitted, rows) <= PARITY_ATOL
    np.testing.assert_allclose(onnx_probabilities(graph, fitted, rows.head(1)), probs[:1], atol=PARITY_ATOL)


@pytest.mark.parametrize(("kwargs", "parameter"), [({"k": 0}, "k"), ({"hidden_dims": ()}, "hidden_dims")])
def test_impossible_settings_name_the_parameter(kwargs, parameter):
    with pytest.raises(ModelConfigError) as info:
        TabM(2, [3], **kwargs)
    assert info.value.parameter == parameter
