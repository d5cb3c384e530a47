import numpy as np

from fulqrun_ml.tasks.metrics import binary_report, ece_noise_floor, expected_calibration_error


def test_numpy_ece_equals_torchmetrics_including_bin_edges():
    rng = np.random.default_rng(0)
    for n in (7, 500):
        p = rng.uniform(size=n)
        y = (rng.uniform(size=n) < p**2).astype(float)
        assert np.isclose(expected_calibration_error(p, y), binary_report(p, y)["ece"], atol=1e-6)
    edges = np.array([1e-7, 1 / 15, 2 / 15, 0.5, 1 - 1e-7])  # on the bin boundaries (binary_report clamps to 1e-7)
    labels = np.array([0.0, 1, 0, 1, 1])
    assert np.isclose(expected_calibration_error(edges, labels), binary_report(edges, labels)["ece"], atol=1e-6)
    batch = np.stack([labels, 1 - labels])
    np.testing.assert_allclose(
        expected_calibration_error(edges, batch),
        [expected_calibration_error(edges, labels), expected_calibration_error(edges, 1 - labels)],
    )


def test_floor_shrinks_with_rows_and_a_miscalibrated_model_sits_above_it():
    rng = np.random.default_rng(1)
    small, large = ece_noise_floor(rng.uniform(size=300)), ece_noise_floor(rng.uniform(size=30_000))
    assert large["mean"] < small["mean"] / 5  # ~1/sqrt(n)
    assert small["mean"] <= small["p90"]
    p = rng.uniform(0.2, 0.8, 5_000)
    calibrated = (rng.uniform(size=p.size) < p).astype(float)
    shifted = (rng.uniform(size=p.size) < p - 0.1).astype(float)
    floor = ece_noise_floor(p)
    assert expected_calibration_error(p, calibrated) < floor["p90"] * 1.5
    assert expected_calibration_error(p, shifted) > 3 * floor["p90"]
