"""The forecaster backbone: shapes, quantiles that never cross, scale invariance, the conformal wrapper."""

import pytest
import torch

from fulqrun_ml.models.forecaster import ConformalForecaster, ForecastEnsemble, NBeatsForecaster

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def make_net(**kwargs) -> NBeatsForecaster:
    torch.manual_seed(0)
    args = dict(lookback=12, horizon=3, quantiles=QUANTILES, n_calendar=4, n_series=5, hidden=16, pools=(4, 1))
    return NBeatsForecaster(**{**args, **kwargs}).eval()


def batch(n: int = 64, scale: float = 1000.0) -> dict[str, torch.Tensor]:
    """A window batch keyed as the forecaster's keyword inputs (= the datamodule's batch keys)."""
    g = torch.Generator().manual_seed(1)
    return {
        "history": torch.rand(n, 12, generator=g) * scale,
        "calendar": torch.randn(n, 3, 4, generator=g),
        "series": torch.randint(0, 6, (n,), generator=g),
    }


def test_shapes_and_monotone_quantiles():
    net = make_net()
    q = net(**batch())
    assert q.shape == (64, 3, len(QUANTILES))
    assert torch.all(q[..., 1:] >= q[..., :-1])
    # Also with random (untrained, large) weights: monotone by construction, not by luck of training.
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 3)
    q = net(**batch())
    assert torch.all(q[..., 1:] >= q[..., :-1]) and torch.isfinite(q).all()


def test_forecasts_scale_with_the_series():
    """Windows are scaled by their own level, so a 1000x larger series gets a 1000x larger forecast up to
    the log-scale input; with that input's weights zeroed, exactly 1000x."""
    net = make_net()
    history, calendar, series = batch().values()
    small = net(history=history, calendar=calendar, series=series)
    large = net(history=history * 1000, calendar=calendar, series=series)
    assert not torch.allclose(small * 1000, large, rtol=1e-3)  # the log-scale input is used
    with torch.no_grad():
        for block in net.blocks:
            block.body[0].weight[:, -1] = 0.0  # the log1p(scale) column is the last context input
    torch.testing.assert_close(
        net(history=history, calendar=calendar, series=series) * 1000,
        net(history=history * 1000, calendar=calendar, series=series),
        rtol=1e-4,
        atol=1e-2,
    )


def test_all_zero_history_and_unknown_series_are_finite():
    net = make_net()
    q = net(history=torch.zeros(4, 12), calendar=torch.zeros(4, 3, 4), series=torch.zeros(4, dtype=torch.long))
    assert torch.isfinite(q).all()


def test_conformal_wrapper_shifts_ends_keeps_order_and_clamps():
    net = make_net()
    history, calendar, series = batch().values()
    offsets = torch.zeros(3, len(QUANTILES))
    offsets[:, 0], offsets[:, -1] = -0.5, 0.5
    raw = net(history=history, calendar=calendar, series=series)
    wrapped = ConformalForecaster(net, offsets)(history=history, calendar=calendar, series=series)
    scale = history.abs().mean(1).clamp_min(1.0)[:, None]
    assert torch.all(wrapped >= 0) and torch.all(wrapped[..., 1:] >= wrapped[..., :-1])
    torch.testing.assert_close(wrapped[..., -1], torch.relu(raw[..., -1] + 0.5 * scale))
    torch.testing.assert_close(wrapped[..., 2], torch.relu(raw[..., 2]))
    # Narrowing past the neighbouring quantile is repaired, never a crossing.
    shrink = torch.zeros(3, len(QUANTILES))
    shrink[:, 0], shrink[:, -1] = 50.0, -50.0
    narrowed = ConformalForecaster(net, shrink)(history=history, calendar=calendar, series=series)
    assert torch.all(narrowed[..., 1:] >= narrowed[..., :-1])


@pytest.mark.parametrize("bad", [(0.5, 0.1), (0.0, 0.5), (0.5, 0.5)])
def test_bad_quantiles_are_rejected(bad):
    with pytest.raises(ValueError, match="quantiles"):
        make_net(quantiles=bad)


def test_ensemble_is_the_mean_of_its_members_and_stays_monotone():
    members = [make_net(), make_net(hidden=8)]
    with torch.no_grad():
        for p in members[1].parameters():
            p.normal_(0, 2)
    ensemble = ForecastEnsemble(members).eval()
    inputs = batch()
    q = ensemble(**inputs)
    torch.testing.assert_close(q, (members[0](**inputs) + members[1](**inputs)) / 2)
    assert torch.all(q[..., 1:] >= q[..., :-1]) and ensemble.horizon == 3
