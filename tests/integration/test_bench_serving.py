"""The serving load harness, end to end at tiny scale: real Triton, real wrk, real gRPC clients.

Checks the report's shape and that the load ran cleanly (no errors; the model, its identity and the one-tensor
floor measured per protocol and point, each row with its ratio to the floor); it never asserts speed (that is
what the report is for).
"""

from __future__ import annotations

import json
import resource

import pytest
from google.protobuf import text_format
from omegaconf import OmegaConf
from tritonclient.grpc import model_config_pb2 as pb

from fulqrun_ml.benchmarks import loadgen
from fulqrun_ml.benchmarks.serving import main as bench_main
from fulqrun_ml.benchmarks.serving import parse_points
from fulqrun_ml.benchmarks.serving_identity import identity_config
from fulqrun_ml.benchmarks.serving_report import FLOOR, IDENTITY, add_floor_ratios, evaluate_targets
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.serving.repository import config_for_version

pytestmark = pytest.mark.integration

ROW_KEYS = {
    "model": str,
    "protocol": str,
    "concurrency": int,
    "rows_per_request": int,
    "rps": float,
    "predictions_per_s": float,
    "p50_ms": float,
    "p95_ms": float,
    "p99_ms": float,
    "errors": int,
    "timeouts": int,
    "client_cpu": float,
    "server_cpu": float,
}


@pytest.fixture(scope="module")
def quick_report(published, tmp_path_factory):
    version, _ = published
    out = tmp_path_factory.mktemp("bench") / "bench_serving.json"
    argv = ["--models-dir", str(version.path.parents[1]), "--model", version.name, "--quick", "--out", str(out)]
    argv += ["--points", "1,3,2x4"]
    assert bench_main(argv) == 0
    return json.loads(out.read_text()), out


@pytest.mark.extended  # runs the benchmark harness end to end (~60 s); the report it writes is committed
def test_report_rows_are_well_formed(quick_report):
    report, _ = quick_report
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["tritonserver"]
    assert report["settings"]["loopback_only"] is True
    for row in report["rows"]:
        for key, kind in ROW_KEYS.items():
            value = row[key]
            assert isinstance(value, int | float) if kind is float else isinstance(value, kind), (key, value)
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["predictions_per_s"] == pytest.approx(row["rps"] * row["rows_per_request"], rel=1e-3, abs=0.2)
        assert row["requests"] > 0 and row["rps"] > 0


@pytest.mark.extended  # runs the benchmark harness end to end (~60 s); the report it writes is committed
def test_every_point_ran_clean_for_model_and_identity(quick_report):
    report, _ = quick_report
    measured = {(r["model"], r["protocol"], r["concurrency"], r["rows_per_request"]) for r in report["rows"]}
    expected = {
        (model, protocol, c, rows)
        for model in ("deal_win", IDENTITY, FLOOR)
        for protocol in ("http", "grpc")
        for c, rows in ((1, 1), (3, 1), (2, 4))
    }
    assert measured == expected
    assert [r for r in report["rows"] if r["errors"] or r["timeouts"]] == []
    # The server really executed the requests (Triton's own counters moved).
    assert all(r["server_avg_batch_rows"] and r["server_avg_batch_rows"] >= 1 for r in report["rows"])
    # Every row is set against the floor measured at the same protocol and point, in the same run.
    for row in report["rows"]:
        floor = next(
            f
            for f in report["rows"]
            if f["model"] == FLOOR
            and (f["protocol"], f["concurrency"], f["rows_per_request"])
            == (row["protocol"], row["concurrency"], row["rows_per_request"])
        )
        assert row["floor_ratio"] == pytest.approx(row["predictions_per_s"] / floor["predictions_per_s"], abs=1e-3)
        assert row["load_average_1m"] >= 0
    assert report["model"]["layout"] == "packed"


def test_floor_targets_judge_the_ratio_to_the_floor():
    def row(model, c, rows, pps, p99, errors=0):
        return {
            "model": model,
            "protocol": "grpc",
            "concurrency": c,
            "rows_per_request": rows,
            "rps": pps / rows,
            "predictions_per_s": pps,
            "p99_ms": p99,
            "errors": errors,
            "requests": 100,
        }

    rows = [row(FLOOR, 64, 1, 1000, 10), row("m", 64, 1, 810, 12), row(FLOOR, 10000, 1, 900, 1000)]
    rows += [row("m", 10000, 1, 800, 1600), row(FLOOR, 160, 64, 10000, 100), row("m", 160, 64, 7000, 150)]
    add_floor_ratios(rows)
    verdicts = {t["target"]: (t["value"], t["met"]) for t in evaluate_targets(rows, "m") if "floor" in t["target"]}
    assert verdicts == {
        "throughput >= 0.8 x one-tensor floor at concurrency 64": (0.81, True),
        "10,000 concurrent: 0 errors and p99 <= 1.5 x floor p99": ([0, 1.6], False),
        "160 x 64 rows: predictions/s >= 0.8 x one-tensor floor": (0.7, False),
    }


@pytest.mark.extended  # runs the benchmark harness end to end (~60 s); the report it writes is committed
def test_targets_and_plot_are_written(quick_report):
    report, out = quick_report
    assert {t["protocol"] for t in report["targets"]} == {"http", "grpc"}
    assert all(isinstance(t["met"], bool) for t in report["targets"])
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_identity_config_mirrors_the_model(published):
    version, _ = published
    model = config_for_version(version, max_batch_size=128, preferred_batch_sizes=(64,))
    identity = identity_config(model, "value")
    parsed = text_format.Parse(identity.to_pbtxt(), pb.ModelConfig())
    assert parsed.backend == "python" and parsed.max_batch_size == 128
    assert [i.name for i in parsed.input] == [i.name for i in model.inputs]
    assert [o.name for o in parsed.output] == [model.outputs[0].name]
    assert parsed.parameters["echo_input"].string_value == "value"
    with pytest.raises(FulqrunMLError, match="'nope' is not an input"):
        identity_config(model, "nope")


@pytest.mark.parametrize("text", ["", "0", "64x0", "abc", "1,x2"])
def test_bad_sweep_points_are_refused(text):
    with pytest.raises(FulqrunMLError):
        parse_points(text)


def test_open_file_limit_is_raised_as_far_as_allowed():
    soft, hard = loadgen.raise_open_file_limit(10_000 + 1024)
    assert soft <= hard or hard == resource.RLIM_INFINITY
    assert soft >= min(11_024, hard)


def test_channel_count_grows_with_concurrency():
    assert loadgen.grpc_channel_count(1) == 1
    assert loadgen.grpc_channel_count(64) == 4
    assert loadgen.grpc_channel_count(10_000) == 20


def test_the_benchmarks_prediction_log_spools_under_its_temp_directory(tmp_path):
    """A sweep logs millions of predictions: they go with the benchmark's temp directory, not into logs/."""
    from fulqrun_ml.benchmarks.serving import _log_predictions_under
    from fulqrun_ml.benchmarks.serving_identity import load_serving_config
    from fulqrun_ml.serving.deploy import cpu_options

    serving = load_serving_config()
    assert serving.prediction_log.enabled, "the default serves with the log on; this test needs it"
    moved = cpu_options(_log_predictions_under(serving, tmp_path))
    assert moved["prediction_log"]["spool_dir"] == tmp_path / "predictions" / "spool"
    assert cpu_options(serving)["prediction_log"]["spool_dir"] != moved["prediction_log"]["spool_dir"]
    off = OmegaConf.merge(serving, {"prediction_log": {"enabled": False}})
    assert _log_predictions_under(off, tmp_path) is off
