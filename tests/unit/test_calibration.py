import numpy as np
import pandas as pd
import pytest
import torch

from fulqrun_ml.export.onnx_export import export_onnx, onnx_probabilities
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.tasks.binary import predict_logits, predict_probabilities
from fulqrun_ml.tasks.calibration import IsotonicCalibrator, fit_calibration, fit_isotonic, fit_temperature
from fulqrun_ml.tasks.metrics import binary_report


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20_000)
    labels = rng.uniform(size=true_logits.size) < 1 / (1 + np.exp(-true_logits))
    overconfident = 3.0 * true_logits
    temperature = fit_temperature(overconfident, labels)
    assert abs(temperature - 3.0) < 0.15
    before = binary_report(1 / (1 + np.exp(-overconfident)), labels)
    after = binary_report(1 / (1 + np.exp(-overconfident / temperature)), labels)
    assert after["ece"] < before["ece"] / 3 and after["log_loss"] < before["log_loss"]
    assert np.isclose(after["auc"], before["auc"])  # a temperature never changes the ranking


def test_exported_graph_applies_the_temperature():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=64), "c": rng.choice(["a", "b"], 64)})
    spec = FeatureSpec((NumericFeature("x", "x"),), (CategoricalFeature("c", "c"),)).fit(frame)
    net = MLP(1, spec.cardinalities, hidden_dims=(8,)).eval()
    calibrated = onnx_probabilities(export_onnx(net, spec, temperature=2.5), spec, frame)
    np.testing.assert_allclose(calibrated, predict_probabilities(net, spec.encode(frame), 2.5), atol=1e-6)
    assert not np.allclose(calibrated, predict_probabilities(net, spec.encode(frame)), atol=1e-4)


def test_isotonic_fixes_a_monotone_miscalibration_temperature_cannot():
    """Scores p^3 of true probabilities p: a non-logistic distortion that isotonic undoes."""
    rng = np.random.default_rng(2)
    p = rng.uniform(0.02, 0.98, 20_000)
    labels = (rng.uniform(size=p.size) < p).astype(float)
    distorted = p**3
    logits = np.log(distorted / (1 - distorted))
    temperature = fit_calibration("temperature", logits, labels, len(labels))
    isotonic = fit_calibration("isotonic", logits, labels, len(labels))
    assert isotonic["method"] == "isotonic" and len(isotonic["x"]) == len(isotonic["y"]) > 2
    ece_t = binary_report(1 / (1 + np.exp(-logits / temperature["temperature"])), labels)["ece"]
    ece_i = binary_report(IsotonicCalibrator(isotonic["x"], isotonic["y"])(torch.tensor(logits).float()[:, None])
                          .numpy().ravel(), labels)["ece"]  # fmt: skip
    assert ece_i < 0.02 < ece_t


def test_isotonic_calibrator_matches_sklearn_and_onnx_runtime():
    """PyTorch's piecewise-linear sum == sklearn's IsotonicRegression.predict == the exported ONNX graph."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=400), "c": rng.choice(["a", "b", "c"], 400)})
    spec = FeatureSpec((NumericFeature("x", "x"),), (CategoricalFeature("c", "c"),)).fit(frame)
    torch.manual_seed(0)  # the network's init must not depend on which tests ran before this one
    net = MLP(1, spec.cardinalities, hidden_dims=(8,)).eval()
    logits = predict_logits(net, spec.encode(frame))
    labels = (rng.uniform(size=len(frame)) < 1 / (1 + np.exp(-3 * frame["x"]))).astype(float)
    record = fit_calibration("isotonic", logits, labels, len(frame))
    iso = fit_isotonic(torch.sigmoid(torch.from_numpy(logits)).double().numpy(), labels)
    # Inside, between and outside the fitted thresholds (clipped there).
    probe = torch.tensor(np.concatenate([np.linspace(-8, 8, 301), logits]), dtype=torch.float32)[:, None]
    # Same float32 sigmoid on both sides: near-vertical isotonic steps amplify any input rounding difference.
    sklearn_p = iso.predict(torch.sigmoid(probe).double().numpy().ravel())
    torch_p = IsotonicCalibrator(record["x"], record["y"])(probe)
    np.testing.assert_allclose(torch_p.numpy().ravel(), sklearn_p, atol=1e-5)

    graph = export_onnx(net, spec, calibration=record)
    onnx_p = onnx_probabilities(graph, spec, frame)
    np.testing.assert_allclose(onnx_p, predict_probabilities(net, spec.encode(frame), record), atol=1e-6)
    np.testing.assert_allclose(onnx_p, iso.predict(torch.sigmoid(torch.from_numpy(logits)).double().numpy()), atol=1e-5)
    assert len(np.unique(onnx_p)) < len(frame)  # a step function: really isotonic, not the raw sigmoid


def test_calibration_records_are_checked():
    with pytest.raises(ValueError, match=r"task\.calibration"):
        fit_calibration("beta", np.zeros(4), np.array([0, 1, 0, 1]), 4)
    with pytest.raises(ValueError, match="weights"):
        fit_calibration("platt", np.zeros(4), np.array([0, 1, 0, 1]), 4, weights=np.array([1.0, 1.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="thresholds"):
        IsotonicCalibrator([0.1, 0.2], [0.5])


def test_platt_undoes_a_base_rate_shift_temperature_cannot_and_exports_it():
    """Logits shifted by +1 (the model saw more wins than deployment has): Platt's intercept recovers the
    shift, temperature alone cannot; the exported graph applies slope and intercept exactly."""
    rng = np.random.default_rng(4)
    true_logits = rng.normal(0, 1.5, 20_000)
    labels = (rng.uniform(size=true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(float)
    shifted = true_logits + 1.0
    platt = fit_calibration("platt", shifted, labels, len(labels))
    temperature = fit_calibration("temperature", shifted, labels, len(labels))
    assert abs(platt["temperature"] - 1.0) < 0.05 and abs(platt["bias"] + 1.0) < 0.06
    ece_p = binary_report(1 / (1 + np.exp(-(shifted / platt["temperature"] + platt["bias"]))), labels)["ece"]
    ece_t = binary_report(1 / (1 + np.exp(-shifted / temperature["temperature"])), labels)["ece"]
    assert ece_p < 0.015 < ece_t

    frame = pd.DataFrame({"x": rng.normal(size=64), "c": rng.choice(["a", "b"], 64)})
    spec = FeatureSpec((NumericFeature("x", "x"),), (CategoricalFeature("c", "c"),)).fit(frame)
    torch.manual_seed(0)
    net = MLP(1, spec.cardinalities, hidden_dims=(8,)).eval()
    record = {"method": "platt", "temperature": 1.7, "bias": -0.4}
    expected = 1 / (1 + np.exp(-(predict_logits(net, spec.encode(frame)) / 1.7 - 0.4)))
    np.testing.assert_allclose(onnx_probabilities(export_onnx(net, spec, calibration=record), spec, frame), expected,
                               atol=1e-6)  # fmt: skip


def test_weights_make_calibration_fit_the_reweighted_mix():
    """Positives under-sampled by half and given weight 2: the weighted fit matches the full sample's fit."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 1.5, 40_000)
    labels = (rng.uniform(size=logits.size) < 1 / (1 + np.exp(-logits))).astype(float)
    keep = (labels == 0) | (rng.uniform(size=labels.size) < 0.5)
    weights = np.where(labels[keep] == 1, 2.0, 1.0)
    full = fit_calibration("platt", logits, labels, len(labels))
    unweighted = fit_calibration("platt", logits[keep], labels[keep], int(keep.sum()))
    weighted = fit_calibration("platt", logits[keep], labels[keep], int(keep.sum()), weights)
    assert weighted["weighted"] and not unweighted["weighted"]
    assert abs(weighted["bias"] - full["bias"]) < 0.05 < abs(unweighted["bias"] - full["bias"])
    iso = fit_calibration("isotonic", logits[keep], labels[keep], int(keep.sum()), weights)
    assert abs(np.mean(iso["y"]) - np.mean(fit_calibration("isotonic", logits, labels, len(labels))["y"])) < 0.05
