"""ORT graph optimisation and INT8 dynamic quantisation of a published version, with the AUC guard."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.export.optimize import (
    OPTIMIZED_FILE,
    QUANTIZED_FILE,
    QuantizationRejectedError,
    holdout_auc,
    optimize_graph,
    optimize_onnx,
    optimize_version,
)
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.store import list_versions


@pytest.fixture(scope="module")
def holdout(trained_run) -> pd.DataFrame:
    return pd.read_parquet(Path(trained_run["run_dir"]) / "holdout.parquet")


@pytest.fixture(scope="module")
def spec(published) -> FittedFeatureSpec:
    version, _ = published
    return FittedFeatureSpec.load(version.path / "feature_spec.json")


def ops(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_optimized_graph_is_rewritten_and_predicts_the_same(published, spec, holdout, tmp_path):
    version, _ = published
    report = optimize_onnx(version.path / "model.onnx", spec, holdout, tmp_path)
    optimized = tmp_path / OPTIMIZED_FILE
    assert report["optimized"]["path"] == str(optimized)
    assert ops(optimized) != ops(version.path / "model.onnx")  # ORT really rewrote it (fusions, folding)
    np.testing.assert_allclose(
        onnx_probabilities(optimized, spec, holdout),
        onnx_probabilities(version.path / "model.onnx", spec, holdout),
        atol=1e-5,
    )
    assert report["optimized"]["max_abs_diff"] <= 1e-5
    assert report["optimized"]["auc"] == pytest.approx(report["auc"], abs=1e-4)
    expected_auc = holdout_auc(onnx_probabilities(version.path / "model.onnx", spec, holdout), holdout["label"])
    assert report["auc"] == pytest.approx(expected_auc, abs=1e-6)
    assert "quantized" not in report and not (tmp_path / QUANTIZED_FILE).exists()


def test_quantized_network_is_int8_and_its_auc_change_is_reported(published, spec, holdout, tmp_path):
    version, _ = published
    report = optimize_onnx(version.path / "model.onnx", spec, holdout, tmp_path, quantize=True, max_auc_drop=1.0)
    quantized = tmp_path / QUANTIZED_FILE
    q = report["quantized"]
    assert q["accepted"] is True and q["path"] == str(quantized)
    counts = ops(quantized)
    assert counts["MatMulInteger"] >= 1 and counts["DynamicQuantizeLinear"] >= 1
    assert counts["LabelEncoder"] == ops(version.path / "model.onnx")["LabelEncoder"]  # preprocessing untouched
    assert all(name.startswith("net/") for name in q["integer_nodes"])
    probabilities = onnx_probabilities(quantized, spec, holdout)
    assert q["auc"] == pytest.approx(holdout_auc(probabilities, holdout["label"]), abs=1e-6)
    assert q["auc_drop"] == pytest.approx(report["auc"] - q["auc"], abs=2e-6)
    assert 0 < q["max_abs_diff"] < 0.1  # int8 changes predictions a little, never wildly


def test_quantized_model_that_loses_auc_is_refused(published, spec, holdout, tmp_path):
    version, _ = published
    # A negative allowance demands the INT8 graph *gain* AUC: it cannot, so the guard must refuse it.
    with pytest.raises(QuantizationRejectedError, match="drops holdout AUC") as caught:
        optimize_onnx(version.path / "model.onnx", spec, holdout, tmp_path, quantize=True, max_auc_drop=-0.5)
    assert caught.value.report["quantized"]["accepted"] is False
    assert not (tmp_path / QUANTIZED_FILE).exists()
    assert (tmp_path / OPTIMIZED_FILE).exists()


def test_optimize_version_reads_the_runs_holdout(published, tmp_path):
    version, _ = published
    report = optimize_version(version, tmp_path)
    assert report["version"] == {"name": version.name, "version": version.version}
    assert report["holdout_rows"] > 0 and 0.0 <= report["auc"] <= 1.0


def test_bad_inputs_are_named(published, spec, holdout, tmp_path):
    version, _ = published
    with pytest.raises(FulqrunMLError, match="unknown graph optimisation level 'max'"):
        optimize_graph(version.path / "model.onnx", tmp_path / "x.onnx", level="max")
    with pytest.raises(FulqrunMLError, match="no 'label' column"):
        optimize_onnx(version.path / "model.onnx", spec, holdout.drop(columns="label"), tmp_path)


def test_export_can_publish_optimised_and_int8_graphs_or_nothing(trained_run, tmp_path):
    """`fulqrun-ml export --quantize`: the INT8 graph is checked inside the staging directory; a graph that
    costs more AUC than allowed means no version at all."""
    run_dir = Path(trained_run["run_dir"])
    version, _ = export_run(run_dir, tmp_path, "deal_win", optimize=True, quantize=True)
    report = json.loads((version.path / "optimization.json").read_text())
    assert (version.path / report["optimized"]["path"]).is_file()
    assert (version.path / report["quantized"]["path"]).is_file() and report["quantized"]["accepted"]
    with pytest.raises(QuantizationRejectedError):
        export_run(run_dir, tmp_path, "deal_win", quantize=True, max_auc_drop=-1.0)  # any graph fails this gate
    assert list_versions(tmp_path, "deal_win") == [version.version]
