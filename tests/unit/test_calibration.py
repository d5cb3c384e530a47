import numpy as np
import pandas as pd

from fulqrun_ml.export.onnx_export import export_onnx, onnx_probabilities
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.tasks.binary import predict_probabilities
from fulqrun_ml.tasks.calibration import fit_temperature
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
