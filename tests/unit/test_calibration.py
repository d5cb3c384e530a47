import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fulqrun_ml.benchmarks.leaderboard import compose_run, load_holdout
from fulqrun_ml.data.snapshots import WEIGHT_COLUMN
from fulqrun_ml.export.onnx_export import export_onnx, onnx_probabilities
from fulqrun_ml.export.package import load_trained_net
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, FittedFeatureSpec, NumericFeature
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.tasks.binary import predict_logits, predict_probabilities
from fulqrun_ml.tasks.calibration import (
    IsotonicCalibrator,
    fit_calibration,
    fit_isotonic,
    fit_temperature,
    rows_hash,
)
from fulqrun_ml.tasks.holdout import evaluate_binary
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.train import train


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
    temperature = fit_calibration("temperature", logits, labels, split="val")
    isotonic = fit_calibration("isotonic", logits, labels, split="val")
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
    record = fit_calibration("isotonic", logits, labels, split="val")
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
        fit_calibration("beta", np.zeros(4), np.array([0, 1, 0, 1]), split="val")
    with pytest.raises(ValueError, match="weights"):
        fit_calibration(
            "platt", np.zeros(4), np.array([0, 1, 0, 1]), split="val", weights=np.array([1.0, 1.0, np.nan, 1.0])
        )
    with pytest.raises(ValueError, match="thresholds"):
        IsotonicCalibrator([0.1, 0.2], [0.5])


def test_platt_undoes_a_base_rate_shift_temperature_cannot_and_exports_it():
    """Logits shifted by +1 (the model saw more wins than deployment has): Platt's intercept recovers the
    shift, temperature alone cannot; the exported graph applies slope and intercept exactly."""
    rng = np.random.default_rng(4)
    true_logits = rng.normal(0, 1.5, 20_000)
    labels = (rng.uniform(size=true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(float)
    shifted = true_logits + 1.0
    platt = fit_calibration("platt", shifted, labels, split="val")
    temperature = fit_calibration("temperature", shifted, labels, split="val")
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
    full = fit_calibration("platt", logits, labels, split="val")
    unweighted = fit_calibration("platt", logits[keep], labels[keep], split="val")
    weighted = fit_calibration("platt", logits[keep], labels[keep], split="val", weights=weights)
    assert weighted["weighted"] and not unweighted["weighted"]
    assert abs(weighted["bias"] - full["bias"]) < 0.05 < abs(unweighted["bias"] - full["bias"])
    iso = fit_calibration("isotonic", logits[keep], labels[keep], split="val", weights=weights)
    assert abs(np.mean(iso["y"]) - np.mean(fit_calibration("isotonic", logits, labels, split="val")["y"])) < 0.05


def small_binary_case(seed: int = 6) -> tuple:
    """A tiny network, its feature spec and val/test frames with different rows, labels and censoring weights."""
    rng = np.random.default_rng(seed)

    def frame(n: int) -> pd.DataFrame:
        x = rng.normal(size=n)
        return pd.DataFrame(
            {
                "x": x,
                "c": rng.choice(["a", "b"], n),
                "label": (rng.uniform(size=n) < 1 / (1 + np.exp(-2 * x - 0.8))).astype(float),
                WEIGHT_COLUMN: rng.uniform(0.5, 3.0, n),
            }
        )

    frames = {"train": frame(200), "val": frame(400), "test": frame(300)}
    spec = FeatureSpec((NumericFeature("x", "x"),), (CategoricalFeature("c", "c"),)).fit(frames["train"])
    torch.manual_seed(0)
    net = MLP(1, spec.cardinalities, hidden_dims=(8,)).eval()
    return net, spec, frames


def split_hash(frame: pd.DataFrame) -> str:
    return rows_hash(frame["label"].to_numpy(), frame[WEIGHT_COLUMN].to_numpy())


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_evaluate_binary_records_the_validation_rows_it_calibrated_on(method):
    """`fitted_on` is computed from the rows the fit received: the validation split's hash, not the holdout's.
    Calibrating on frames["test"] (or on anything but validation) fails here."""
    net, spec, frames = small_binary_case()
    record = evaluate_binary(net, spec, frames, {}, method).calibration
    assert record["fitted_on"] == {"split": "val", "rows": len(frames["val"]), "hash": split_hash(frames["val"])}
    assert record["fitted_on"]["hash"] != split_hash(frames["test"])
    assert record["weighted"] is True
    assert json.loads(json.dumps(record)) == record  # exporters copy it verbatim into calibration.json


def test_evaluate_binary_fits_with_the_censoring_weights():
    """The record equals a direct weighted fit on the validation logits and differs from the unweighted one."""
    net, spec, frames = small_binary_case()
    val = frames["val"]
    logits, labels = predict_logits(net, spec.encode(val)), val["label"].to_numpy()
    record = evaluate_binary(net, spec, frames, {}, "platt").calibration
    weighted = fit_calibration("platt", logits, labels, split="val", weights=val[WEIGHT_COLUMN].to_numpy())
    unweighted = fit_calibration("platt", logits, labels, split="val")
    assert record == weighted
    assert (record["temperature"], record["bias"]) != pytest.approx((unweighted["temperature"], unweighted["bias"]))
    assert unweighted["fitted_on"]["hash"] != record["fitted_on"]["hash"]  # the weights are part of the hash
    no_weights = {split: frame.drop(columns=[WEIGHT_COLUMN]) for split, frame in frames.items()}
    plain = evaluate_binary(net, spec, no_weights, {}, "platt").calibration
    assert plain == unweighted and plain["weighted"] is False


def test_rows_hash_depends_on_labels_weights_and_order():
    labels, weights = np.array([0.0, 1.0, 1.0]), np.array([1.0, 2.0, 1.5])
    assert rows_hash(labels, weights) == rows_hash(labels.astype(np.float32), list(weights))
    assert len({rows_hash(labels), rows_hash(labels, weights), rows_hash(labels[::-1], weights[::-1])}) == 3


@pytest.mark.slow
def test_a_full_run_calibrates_on_weighted_validation_rows(tmp_path):
    """`train` on a tiny deal-win config: calibration.json (and the run record) name the validation split's rows
    and hash, and hold exactly the weighted fit on the saved network's validation logits."""
    overrides = ["data.source.n_opportunities=1500", "data.source.n_companies=300", "data.source.n_reps=10"]
    overrides += ["trainer.max_epochs=1", "task.calibration=platt"]  # Platt: its bias is checked below too
    summary = train(compose_run("deal_win", "mlp", tmp_path / "run", 0, overrides))
    run_dir = Path(summary["run_dir"])
    record = json.loads((run_dir / "calibration.json").read_text())
    assert summary["calibration"] == record and record["method"] == "platt" and record["weighted"] is True

    holdout, _ = load_holdout(compose_run("deal_win", "mlp", tmp_path / "data", 0, overrides))
    assert holdout.data_hash == summary["data_hash"]
    val, test = holdout.frames["val"], holdout.frames["test"]
    assert record["fitted_on"] == {"split": "val", "rows": len(val), "hash": split_hash(val)}
    assert record["fitted_on"]["hash"] != split_hash(test)
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    logits = predict_logits(load_trained_net(run_dir, spec), spec.encode(val))
    direct = fit_calibration(
        "platt", logits, val["label"].to_numpy(), split="val", weights=val[WEIGHT_COLUMN].to_numpy()
    )
    assert record["temperature"] == pytest.approx(direct["temperature"], rel=1e-6)
    assert record["bias"] == pytest.approx(direct["bias"], rel=1e-6, abs=1e-9)
