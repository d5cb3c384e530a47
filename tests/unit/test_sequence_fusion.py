"""SequenceFusion: shapes, padding never changes the output, the exact tabular-only ablation, bad inputs."""

import numpy as np
import pytest
import torch

from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.models.sequence_fusion import ActivitySequenceEncoder, SequenceFusion, SequenceInputError

SMALL = {"hidden_dims": (16, 8), "d_model": 8, "n_heads": 2, "n_layers": 2, "max_len": 12}
N_CONT, CARDS = 3, [4, 5]


def batch(n: int = 6, length: int = 10, n_real: tuple[int, ...] = (0, 1, 3, 10, 5, 2), seed: int = 0):
    """Tabular rows and left-padded sequences with the given number of real events per row."""
    g = torch.Generator().manual_seed(seed)
    cont, cat = torch.randn(n, N_CONT, generator=g), torch.randint(0, 4, (n, 2), generator=g)
    event = torch.randint(1, 7, (n, length), generator=g)
    channel = torch.randint(1, 6, (n, length), generator=g)
    delta, age = torch.rand(n, length, generator=g) * 9, torch.rand(n, length, generator=g) * 90
    for row, k in enumerate(n_real):
        event[row, : length - k] = 0
        channel[row, : length - k] = 0
        delta[row, : length - k] = 0
        age[row, : length - k] = 0
    return cont, cat, {"event_type": event, "channel": channel, "delta_days": delta, "age_days": age}


def fused(seed: int = 0, **kwargs) -> SequenceFusion:
    torch.manual_seed(seed)
    return SequenceFusion(N_CONT, CARDS, **{**SMALL, **kwargs}).eval()


def test_one_finite_logit_per_row_also_for_deals_without_touches():
    cont, cat, seq = batch()
    out = fused()(continuous=cont, categorical=cat, **seq)
    assert out.shape == (6, 1) and torch.isfinite(out).all()
    assert ActivitySequenceEncoder(d_model=8, n_heads=2, max_len=12)(**seq).shape == (6, 8)


def test_padding_values_and_extra_left_padding_do_not_change_outputs():
    net = fused()
    cont, cat, seq = batch()
    with torch.no_grad():
        reference = net(continuous=cont, categorical=cat, **seq)
        garbage = {k: v.clone() for k, v in seq.items()}
        pad = seq["event_type"] == 0
        garbage["channel"][pad] = 3
        garbage["delta_days"][pad] = 77.0
        garbage["age_days"][pad] = 500.0
        assert torch.allclose(net(continuous=cont, categorical=cat, **garbage), reference, atol=1e-6)
        longer = {k: torch.cat([torch.zeros(6, 2, dtype=v.dtype), v], 1) for k, v in seq.items()}
        assert torch.allclose(net(continuous=cont, categorical=cat, **longer), reference, atol=1e-6)
        # Row 0 has no events: the same as calling without sequences at all.
        assert torch.allclose(net(continuous=cont, categorical=cat)[0], reference[0], atol=1e-6)
        # A real event does change the output (the branch is not dead).
        changed = {k: v.clone() for k, v in seq.items()}
        changed["event_type"][2, -1] = 1 + changed["event_type"][2, -1] % 6
        assert not torch.allclose(net(continuous=cont, categorical=cat, **changed)[2], reference[2], atol=1e-5)


def test_event_order_and_timing_matter():
    net = fused()
    cont, cat, seq = batch()
    with torch.no_grad():
        reference = net(continuous=cont, categorical=cat, **seq)
        flipped = {k: v.clone() for k, v in seq.items()}
        flipped["event_type"][3] = seq["event_type"][3].flip(0)
        assert not torch.allclose(net(continuous=cont, categorical=cat, **flipped)[3], reference[3], atol=1e-5)
        later = {k: v.clone() for k, v in seq.items()}
        later["age_days"][3] = seq["age_days"][3] + 30.0
        assert not torch.allclose(net(continuous=cont, categorical=cat, **later)[3], reference[3], atol=1e-5)


def test_ablation_is_exactly_the_mlp_and_shares_the_fused_models_tabular_start():
    cont, cat, seq = batch()
    ablation = fused(use_sequence=False)
    torch.manual_seed(0)
    mlp = MLP(N_CONT, CARDS, SMALL["hidden_dims"], dropout=0.3).eval()
    with torch.no_grad():
        assert torch.equal(ablation(continuous=cont, categorical=cat, **seq), mlp(continuous=cont, categorical=cat))
        assert torch.equal(
            ablation(continuous=cont, categorical=cat), ablation(continuous=cont, categorical=cat, **seq)
        )  # sequences are ignored
    full = fused()
    for name, value in ablation.state_dict().items():
        assert torch.equal(full.state_dict()[name], value), name
    assert ablation.sequence is None and sum(p.numel() for p in full.parameters()) > sum(
        p.numel() for p in ablation.parameters()
    )


def test_direction_is_embedded_when_present():
    net = fused(n_directions=5)
    cont, cat, seq = batch()
    direction = torch.where(seq["event_type"] > 0, 2, 0)
    with torch.no_grad():
        a = net(continuous=cont, categorical=cat, **seq, direction=direction)
        b = net(continuous=cont, categorical=cat, **seq, direction=torch.where(seq["event_type"] > 0, 3, 0))
    assert not torch.allclose(a[1:], b[1:], atol=1e-5) and torch.allclose(a[0], b[0], atol=1e-6)


def test_gradients_reach_both_branches():
    net = fused().train()
    cont, cat, seq = batch()
    net(continuous=cont, categorical=cat, **seq).sum().backward()
    assert net.sequence.event_type.weight.grad.abs().sum() > 0
    assert net.tabular.head.linear.weight.grad.abs().sum() > 0


def test_bad_inputs_and_config_name_the_field():
    net = fused()
    cont, cat, seq = batch(length=13, n_real=(1,) * 6)
    with pytest.raises(SequenceInputError, match="event_type"):
        net(continuous=cont, categorical=cat, **seq)
    cont, cat, seq = batch()
    with pytest.raises(SequenceInputError, match="age_days"):
        net(continuous=cont, categorical=cat, **{k: seq[k] for k in ("event_type", "channel", "delta_days")})
    with pytest.raises(ModelConfigError, match="d_model"):
        SequenceFusion(N_CONT, CARDS, d_model=10, n_heads=4)
    with pytest.raises(ModelConfigError, match="n_event_types"):
        SequenceFusion(N_CONT, CARDS, n_event_types=1)


def test_constructible_from_sizes_alone_like_the_gpu_check_does():
    net = SequenceFusion(n_continuous=15, cardinalities=[6, 7, 4, 5, 12]).eval()
    out = net(continuous=torch.randn(2, 15), categorical=torch.zeros(2, 5, dtype=torch.long))
    assert out.shape == (2, 1) and np.isfinite(out.detach().numpy()).all()
