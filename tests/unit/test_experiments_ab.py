"""A/B experiments: config validation, sticky hashed assignment, sequential analysis of outcomes, and the CLI."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml import cli
from fulqrun_ml.monitoring.experiments import analyse_outcomes, main
from fulqrun_ml.monitoring.experiments_config import (
    ExperimentError,
    assign,
    assign_indices,
    bucket,
    experiment_from_dict,
    load_experiment,
)

RAW = {
    "name": "unit_test_experiment",
    "salt": "s1",
    "unit": "opportunity_id",
    "variants": [{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5, "kind": "policy"}],
    "metric": {"name": "win_rate", "type": "binary", "outcome_column": "won"},
    "minimum_detectable_effect": 0.05,
    "alpha": 0.05,
    "max_samples": 20_000,
    "min_samples_per_arm": 50,
}


def config(**changes):
    return experiment_from_dict({**RAW, **changes})


def test_the_example_experiment_loads():
    experiment = load_experiment("deal_win_next_step")
    assert [v.name for v in experiment.variants] == ["control", "treatment"]
    assert experiment.alpha == 0.05 and experiment.minimum_detectable_effect == 0.05
    assert experiment.tau == experiment.minimum_detectable_effect  # mixing_sd: null -> the MDE
    assert experiment.outcome_column == "won" and experiment.unit == "opportunity_id"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"variants": [{"name": "only", "weight": 1}]}, "variants"),
        ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": -1}]}, "variants[1].weight"),
        ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 1, "kind": "x"}]}, "variants[1].kind"),
        ({"variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]}, "variants"),
        ({"alpha": 0.7}, "alpha"),
        ({"alpha": "0.05"}, "alpha"),
        ({"minimum_detectable_effect": 0}, "minimum_detectable_effect"),
        ({"max_samples": 1}, "max_samples"),
        ({"metric": {"type": "continuous"}}, "metric.type"),
        ({"min_samples_per_arm": 0}, "min_samples_per_arm"),
    ],
)
def test_bad_config_names_the_field(changes, field):
    with pytest.raises(ExperimentError) as info:
        config(**changes)
    assert info.value.field == field
    assert f"'{field}'" in str(info.value)


def test_unknown_config_names_the_known_ones():
    with pytest.raises(ExperimentError, match="deal_win_next_step"):
        load_experiment("no_such_experiment")


def test_bucket_is_sha256_of_salt_name_and_id_and_never_changes():
    experiment = load_experiment("deal_win_next_step")
    key = f"{experiment.salt}\x1f{experiment.name}\x1fOPP-1".encode()
    assert bucket(experiment, "OPP-1") == int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    assert bucket(experiment, "OPP-1") == 0.33668196693227276  # golden: a changed scheme re-shuffles live arms


def test_assignment_is_sticky_across_processes():
    """Python's own hash() is salted per process; ours must not be."""
    ids = [f"opp-{i}" for i in range(200)]
    here = assign(config(), ids)
    assert here == assign(config(), list(reversed(ids)))[::-1]  # order does not matter
    code = (
        "import json,sys; from fulqrun_ml.monitoring.experiments_config import experiment_from_dict, assign;"
        "raw=json.loads(sys.argv[1]); print(json.dumps(assign(experiment_from_dict(raw), raw['ids'])))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps({**RAW, "ids": ids})], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == here


def test_split_proportions_follow_the_weights_within_binomial_tolerance():
    weights = [0.2, 0.3, 0.5]
    experiment = config(variants=[{"name": f"v{i}", "weight": w} for i, w in enumerate(weights)])
    n = 30_000
    counts = np.bincount(assign_indices(experiment, [f"deal-{i}" for i in range(n)]), minlength=3)
    for count, w in zip(counts, weights, strict=True):
        assert abs(count - n * w) < 4 * np.sqrt(n * w * (1 - w)), counts


def test_two_experiments_split_the_population_independently():
    ids = [f"deal-{i}" for i in range(20_000)]
    a, b = assign_indices(config(), ids), assign_indices(config(salt="s2"), ids)
    agreement = float(np.mean(a == b))
    assert abs(agreement - 0.5) < 4 * np.sqrt(0.25 / len(ids))


def outcomes(experiment, n, rate_control, rate_treatment, seed=0):
    ids = [f"opp-{seed}-{i}" for i in range(n)]
    arm = assign_indices(experiment, ids)
    won = np.random.default_rng(seed).uniform(size=n) < np.where(arm == 1, rate_treatment, rate_control)
    return pd.DataFrame({"opportunity_id": ids, "won": won.astype(int), "order": np.arange(n)})


def test_a_real_effect_stops_early_with_the_right_direction_and_an_interval_around_it():
    experiment = config()
    frame = outcomes(experiment, 20_000, 0.40, 0.50)
    result = analyse_outcomes(experiment, frame)
    (comparison,) = result["comparisons"]
    assert result["status"] == "stopped" and comparison["status"] == "significant"
    assert comparison["stopped_at_n"] < 5_000 and "raises" in comparison["decision"]
    low, high = comparison["always_valid_ci"]
    assert 0 < low < 0.10 < high
    assert comparison["always_valid_p_value"] < experiment.alpha
    # Stopping means what came after is not used: the report at the stop is the same on the truncated data.
    truncated = analyse_outcomes(experiment, frame.iloc[: comparison["stopped_at_n"]])
    assert truncated["comparisons"][0]["always_valid_ci"] == comparison["always_valid_ci"]
    assert not result["sample_ratio_mismatch"]["flagged"]


def test_no_effect_runs_to_max_samples_or_keeps_collecting():
    experiment = config(max_samples=3_000)
    result = analyse_outcomes(experiment, outcomes(experiment, 4_000, 0.45, 0.45, seed=3))
    (comparison,) = result["comparisons"]
    assert comparison["status"] == "max_samples_reached" and comparison["stopped_at_n"] == 3_000
    assert comparison["always_valid_ci"][0] < 0 < comparison["always_valid_ci"][1]
    running = analyse_outcomes(config(), outcomes(experiment, 2_000, 0.45, 0.45, seed=3))
    assert running["status"] == "running" and running["comparisons"][0]["status"] == "continue"


def test_three_variants_are_each_compared_with_the_control_at_a_bonferroni_alpha():
    experiment = config(variants=[{"name": n, "weight": 1} for n in ("control", "b", "c")])
    ids = [f"x{i}" for i in range(6_000)]
    arm = assign_indices(experiment, ids)
    won = np.random.default_rng(4).uniform(size=arm.size) < np.array([0.4, 0.4, 0.6])[arm]
    result = analyse_outcomes(experiment, pd.DataFrame({"opportunity_id": ids, "won": won}))
    by_name = {c["treatment"]: c for c in result["comparisons"]}
    assert by_name["b"]["alpha"] == by_name["c"]["alpha"] == 0.025
    assert by_name["c"]["status"] == "significant" and by_name["b"]["status"] != "significant"


def test_sample_ratio_mismatch_is_flagged():
    experiment = config()
    frame = outcomes(experiment, 4_000, 0.45, 0.45)
    arm = assign_indices(experiment, frame["opportunity_id"].tolist())
    lossy = frame[(arm == 1) | (np.arange(len(frame)) % 3 != 0)]  # a third of control's outcomes never logged
    assert analyse_outcomes(experiment, lossy)["sample_ratio_mismatch"]["flagged"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda f: f.assign(won=f["won"].replace(1, 2)), "won"),
        (lambda f: f.drop(columns="won"), "won"),
        (lambda f: pd.concat([f, f.head(1)]), "opportunity_id"),
        (lambda f: f.assign(variant="control"), "variant"),
    ],
)
def test_bad_outcomes_name_the_field(mutate, field):
    experiment = config()
    with pytest.raises(ExperimentError) as info:
        analyse_outcomes(experiment, mutate(outcomes(experiment, 300, 0.4, 0.4)))
    assert info.value.field == field


def test_order_by_replays_in_arrival_order():
    experiment = config()
    frame = outcomes(experiment, 5_000, 0.40, 0.50)
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert analyse_outcomes(experiment, shuffled, order_by="order") == analyse_outcomes(experiment, frame)
    with pytest.raises(ExperimentError, match="'closed_at'"):
        analyse_outcomes(experiment, frame, order_by="closed_at")


def test_cli_assign_and_analyse(tmp_path, capsys):
    assert main(["assign", "--config", "deal_win_next_step", "--ids", "OPP-1", "OPP-2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["entity_id"] for r in lines] == ["OPP-1", "OPP-2"]
    assert lines[0]["bucket"] == 0.33668196693227276 and lines[0]["variant"] == "control"

    experiment = load_experiment("deal_win_next_step")
    path, out = tmp_path / "outcomes.csv", tmp_path / "result" / "ab.json"
    outcomes(experiment, 3_000, 0.40, 0.55).drop(columns="order").to_csv(path, index=False)
    assert main(["analyse", "--config", "deal_win_next_step", "--outcomes", str(path), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert printed["comparisons"][0]["status"] == "significant"


def test_cli_wiring_and_errors(tmp_path, capsys):
    assert cli.main(["experiment", "assign", "--ids", "OPP-1"]) == 0
    assert json.loads(capsys.readouterr().out)["variant"] == "control"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nvariants: [{name: a, weight: 1}, {name: b, weight: 0}]\n")
    assert cli.main(["experiment", "assign", "--config", str(bad), "--ids", "OPP-1"]) == 2
    assert "variants[1].weight" in capsys.readouterr().err
