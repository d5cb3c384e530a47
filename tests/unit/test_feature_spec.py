import dataclasses

import numpy as np
import onnxruntime as ort
import pytest

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.export.onnx_export import raw_feeds
from fulqrun_ml.features.onnx_graph import build_preprocessing_graph
from fulqrun_ml.features.spec import UNKNOWN_INDEX, FeatureSpec, FittedFeatureSpec
from fulqrun_ml.features.target import TargetScaling
from tests.unit.tabular_data import SPEC
from tests.unit.tabular_data import frame as tabular_frame


def frame(n=200, seed=0):
    return tabular_frame(n, seed)


def test_fit_learns_encoders_from_the_given_rows_only():
    fitted = SPEC.fit(frame())
    assert fitted.vocabularies == {"stage": ["a", "b", "c"], "region": ["x", "y"]}
    assert fitted.cardinalities == [4, 3]
    assert np.isclose(fitted.means["amount"], np.log1p(frame()["amount"]).mean())
    encoded = fitted.encode(frame())
    assert encoded["continuous"].dtype == np.float32 and encoded["continuous"].shape == (200, 2)
    assert np.allclose(encoded["continuous"].mean(0), 0, atol=1e-4)
    assert encoded["categorical"].dtype == np.int64 and encoded["categorical"].min() >= 1


def test_unknown_categories_map_to_the_unknown_index():
    fitted = SPEC.fit(frame())
    new = frame(3).assign(stage=["a", "never-seen", "c"])
    assert fitted.encode(new)["categorical"][:, 0].tolist() == [1, UNKNOWN_INDEX, 3]


def test_round_trip_through_json(tmp_path):
    fitted = SPEC.fit(frame())
    fitted.save(tmp_path / "spec.json")
    loaded = FittedFeatureSpec.load(tmp_path / "spec.json")
    assert loaded == fitted
    np.testing.assert_array_equal(loaded.encode(frame(5, 1))["categorical"], fitted.encode(frame(5, 1))["categorical"])


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("amount", np.nan, "NaN"),
        ("score", np.inf, "infinite"),
        ("amount", -5.0, ">= 0"),
        ("stage", None, "missing values"),
    ],
)
def test_bad_values_name_the_field(column, value, reason):
    fitted = SPEC.fit(frame())
    bad = frame(4)
    bad[column] = bad[column].astype(object) if value is None else bad[column]
    bad.loc[2, column] = value
    with pytest.raises(FieldValidationError, match=reason) as info:
        fitted.encode(bad)
    assert info.value.field == column


def test_missing_and_mistyped_columns_name_the_field():
    fitted = SPEC.fit(frame())
    with pytest.raises(FieldValidationError) as info:
        fitted.encode(frame().drop(columns=["region"]))
    assert info.value.field == "region"
    with pytest.raises(FieldValidationError, match="expected numbers") as info:
        fitted.encode(frame().assign(score="high"))
    assert info.value.field == "score"


def test_preprocessing_graph_matches_python_encoders():
    fitted = SPEC.fit(frame())
    graph = build_preprocessing_graph(fitted, opset=20, ir_version=10)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = frame(500, seed=4).assign(region=lambda f: np.where(f.index % 7 == 0, "unseen", f["region"]))
    continuous, categorical = session.run(["continuous", "categorical"], raw_feeds(fitted, rows))
    expected = fitted.encode(rows)
    np.testing.assert_allclose(continuous, expected["continuous"], atol=1e-5)
    np.testing.assert_array_equal(categorical, expected["categorical"])


def test_imputed_numeric_fills_nan_with_the_training_median_in_python_and_onnx(tmp_path):
    """User tables have gaps: an `impute_missing` column takes NaN, the FeatureSpec CRM features never do."""
    rows = frame().assign(amount=lambda f: f["amount"].where(np.arange(len(f)) % 7 != 0))
    strict = SPEC.fit(frame())
    with pytest.raises(FieldValidationError, match="'amount': contains NaN"):
        strict.encode(rows)
    spec = FeatureSpec(
        numeric=tuple(dataclasses.replace(f, impute_missing=f.name == "amount") for f in SPEC.numeric),
        categorical=SPEC.categorical,
    )
    fitted = spec.fit(rows)
    assert fitted.fill_values == {"amount": float(np.nanmedian(rows["amount"]))}
    encoded = fitted.encode(rows)
    filled = fitted.encode(rows.fillna({"amount": fitted.fill_values["amount"]}))
    np.testing.assert_array_equal(encoded["continuous"], filled["continuous"])
    fitted.save(tmp_path / "spec.json")
    assert FittedFeatureSpec.load(tmp_path / "spec.json").fill_values == fitted.fill_values
    graph = build_preprocessing_graph(fitted, opset=18, ir_version=10)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    continuous = session.run(["continuous"], raw_feeds(fitted, rows))[0]
    np.testing.assert_allclose(continuous, encoded["continuous"], atol=1e-5)
    with pytest.raises(FieldValidationError, match="'amount': contains NaN or infinite"):
        fitted.encode(rows.assign(amount=np.inf))  # only NaN means "missing"


def test_target_scaling_round_trips_and_names_bad_targets(tmp_path):
    days = np.array([1.0, 5.0, 30.0, 120.0])
    scaling = TargetScaling.fit(days, log1p=True, name="days_to_close")
    z = scaling.encode(days)
    assert abs(float(z.mean())) < 1e-6 and np.allclose(scaling.decode(z), days, rtol=1e-5)
    scaling.save(tmp_path / "target.json")
    assert TargetScaling.load(tmp_path / "target.json") == scaling
    with pytest.raises(FieldValidationError, match="'days_to_close'"):
        TargetScaling.fit(np.array([1.0, -2.0]), log1p=True, name="days_to_close")
    with pytest.raises(FieldValidationError, match="'y'"):
        TargetScaling.fit(np.array([1.0, np.nan]), log1p=False, name="y")
