"""Offline bulk scoring: same answers as the exported graph, ids carried through, bad fields named,
output complete or absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.scoring import command
from fulqrun_ml.scoring.bulk import ScoringError, score_table


@pytest.fixture(scope="module")
def rows(published) -> pd.DataFrame:
    version, _ = published
    run_dir = Path(json.loads((version.path / "lineage.json").read_text())["run_dir"])
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    frame = pd.concat([holdout] * 3, ignore_index=True)[spec.spec.names]  # > several small chunks
    frame.insert(0, "opportunity_id", [f"opp-{i:06d}" for i in range(len(frame))])
    frame.loc[5, "stage"] = "a-stage-never-seen"  # unknown category -> the learned unknown embedding
    return frame


def expected(version, frame: pd.DataFrame) -> np.ndarray:
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    return onnx_probabilities(version.path / "model.onnx", spec, frame)


def test_parquet_scores_equal_onnxruntime_with_ids_carried(published, rows, tmp_path):
    version, _ = published
    source = tmp_path / "deals.parquet"
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), source, row_group_size=97)
    result = score_table(version, source, tmp_path / "scores.parquet", chunk_rows=500)
    scored = pd.read_parquet(result.output)
    assert list(scored.columns) == ["opportunity_id", "probability"]
    assert scored["opportunity_id"].tolist() == rows["opportunity_id"].tolist()
    np.testing.assert_allclose(scored["probability"].to_numpy(), expected(version, rows), atol=1e-6)
    assert result.rows == len(rows) and result.chunks == -(-len(rows) // 500)
    assert set(result.timings) == {"read", "validate", "convert", "infer", "write"}


def test_csv_input_and_a_version_directory_work(published, rows, tmp_path):
    version, _ = published
    source = tmp_path / "deals.csv"
    rows.head(300).to_csv(source, index=False)
    result = score_table(version.path, source, tmp_path / "scores.parquet", keep_columns=["opportunity_id", "stage"])
    scored = pd.read_parquet(result.output)
    assert list(scored.columns) == ["opportunity_id", "stage", "probability"]
    np.testing.assert_allclose(scored["probability"].to_numpy(), expected(version, rows.head(300)), atol=1e-6)


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (lambda f: f.drop(columns="industry"), "field 'industry': missing column"),
        (lambda f: f.assign(value=f["value"].astype(str)), "field 'value': expected numbers"),
        (lambda f: f.assign(meetings_total=np.where(f.index == 700, np.nan, f["meetings_total"])), "meetings_total"),
        (lambda f: f.assign(value=np.where(f.index == 701, -5.0, f["value"])), "field 'value': must be >= 0"),
        (lambda f: f.assign(region=f["region"].where(f.index != 702, None)), "field 'region': contains missing"),
    ],
)
def test_bad_input_names_the_field_and_leaves_no_output(published, rows, tmp_path, breaks, message):
    version, _ = published
    source, target = tmp_path / "bad.parquet", tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pandas(breaks(rows), preserve_index=False), source)
    with pytest.raises(FieldValidationError, match=message):
        score_table(version, source, target, chunk_rows=256)  # the bad row sits in a later chunk
    assert list(tmp_path.iterdir()) == [source]  # neither the output nor a temporary file


def test_failed_run_keeps_the_previous_output_intact(published, rows, tmp_path):
    version, _ = published
    good, bad, target = tmp_path / "good.parquet", tmp_path / "bad.parquet", tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), good)
    score_table(version, good, target)
    before = target.read_bytes()
    broken = rows.assign(value=np.where(rows.index == len(rows) - 1, np.inf, rows["value"]))
    pq.write_table(pa.Table.from_pandas(broken, preserve_index=False), bad)
    with pytest.raises(FieldValidationError, match="field 'value': contains NaN or infinite"):
        score_table(version, bad, target, chunk_rows=128)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "good.parquet", "scores.parquet"]


def test_unusable_requests_are_refused(published, rows, tmp_path):
    version, _ = published
    source = tmp_path / "deals.parquet"
    pq.write_table(pa.Table.from_pandas(rows.head(10), preserve_index=False), source)
    (tmp_path / "deals.json").write_text("{}")
    with pytest.raises(ScoringError, match=r"unsupported input format '\.json'"):
        score_table(version, tmp_path / "deals.json", tmp_path / "out.parquet")
    with pytest.raises(FieldValidationError, match="field 'account': requested in keep_columns"):
        score_table(version, source, tmp_path / "out.parquet", keep_columns=["account"])
    with pytest.raises(ScoringError, match="does not exist"):
        score_table(version, tmp_path / "missing.parquet", tmp_path / "out.parquet")


def test_command_line_scores_a_published_version(published, rows, tmp_path, capsys):
    version, _ = published
    source, target = tmp_path / "deals.csv", tmp_path / "scores.parquet"
    rows.head(50).to_csv(source, index=False)
    argv = ["--input", str(source), "--output", str(target), "--models-dir", str(version.path.parents[1])]
    assert command.main([*argv, "--keep", "opportunity_id", "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 50 and summary["output"] == str(target)
    np.testing.assert_allclose(pd.read_parquet(target)["probability"], expected(version, rows.head(50)), atol=1e-6)
