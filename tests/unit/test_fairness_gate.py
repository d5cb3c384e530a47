"""The fairness gate of `models promote` (registry/fairness_gate.py): config validation naming the field, the gate
blocking with the group and gap, the audited override, and the model card's fairness section."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.aliases import promote
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.commands import models_main
from fulqrun_ml.registry.fairness_gate import (
    FAIRNESS_FILE,
    FairnessGateError,
    GovernanceConfigError,
    load_governance_config,
    parse_governance_config,
)
from fulqrun_ml.registry.model_card import render_model_card
from fulqrun_ml.registry.store import publish_version

UNFAIR = {
    "threshold": 0.5,
    "min_group_size": 30,
    "gaps": {
        "region": {"tpr": {"gap": 0.41, "high": "apac", "low": "emea"}, "fpr": {"gap": 0.05, "high": "a", "low": "b"}},
        "industry": {"calibration": {"gap": 0.02, "high": "retail", "low": None}},
    },
}
FAIR = {"threshold": 0.5, "min_group_size": 30, "gaps": {"region": {"tpr": {"gap": 0.1, "high": "a", "low": "b"}}}}
CONFIG = parse_governance_config({"gate": {"max_gaps": {"tpr": 0.3, "fpr": 0.3, "calibration": 0.1}}}, "test")


def publish(models_dir, fairness=None, name="m"):
    metadata = {"target_kind": "binary", **({"fairness": fairness} if fairness is not None else {})}
    return publish_version(models_dir, name, lambda tmp: (tmp / "model.onnx").write_bytes(b"x"), metadata)


def test_the_default_config_loads_and_bad_values_name_their_field(tmp_path):
    config = load_governance_config()
    assert "rep_tenure" in config.fairness.attributes and config.gate.aliases == ("production",)
    for data, field in [
        ({"gate": {"max_gaps": {"tpr": 1.5}}}, "gate.max_gaps.tpr"),
        ({"gate": {"max_gaps": {"accuracy": 0.1}}}, "gate.max_gaps.accuracy"),
        ({"gate": {"on_missing": "maybe"}}, "gate.on_missing"),
        ({"fairness": {"threshold": "high"}}, "fairness.threshold"),
        ({"fairness": {"tenure_bands_days": [365, 180]}}, "fairness.tenure_bands_days"),
        ({"fairness": {"mitigation": {"constraint": "magic"}}}, "fairness.mitigation.constraint"),
        ({"fairness": {"mitigation": {"attribute": "zodiac"}}}, "fairness.mitigation.attribute"),
    ]:
        with pytest.raises(GovernanceConfigError, match=field.replace(".", r"\.")):
            parse_governance_config(data)
    with pytest.raises(GovernanceConfigError, match="--governance-config"):
        load_governance_config(tmp_path / "absent.yaml")


def test_a_failing_gate_blocks_promotion_naming_the_group_and_gap(tmp_path):
    publish(tmp_path, UNFAIR)
    with pytest.raises(FairnessGateError) as err:
        promote(tmp_path, "m", 1, governance=CONFIG)
    message = str(err.value)
    assert "region: tpr gap 0.4100 > max 0.3000 (group apac vs emea)" in message
    assert "--override-fairness" in message
    assert [v.attribute for v in err.value.violations] == ["region"]
    assert read_alias_state(tmp_path, "m").production is None  # nothing moved
    assert [r["action"] for r in read_audit(tmp_path, "m")] == ["publish"]


def test_a_passing_gate_and_ungated_aliases_promote(tmp_path):
    publish(tmp_path, FAIR)
    publish(tmp_path, UNFAIR)
    assert promote(tmp_path, "m", 1, governance=CONFIG).to_version == 1
    assert promote(tmp_path, "m", 2, alias="candidate", governance=CONFIG).to_version == 2  # candidate: not gated
    off = parse_governance_config({"gate": {"enabled": False}})
    assert promote(tmp_path, "m", 2, governance=off).to_version == 2


def test_an_override_promotes_and_records_who_when_and_why(tmp_path):
    publish(tmp_path, UNFAIR)
    with pytest.raises(RegistryError, match="non-empty reason"):
        promote(tmp_path, "m", 1, governance=CONFIG, override_reason="  ")
    change = promote(tmp_path, "m", 1, actor="ada", governance=CONFIG, override_reason="pilot, reviewed by legal")
    assert change.to_version == 1
    record = read_audit(tmp_path, "m")[-1]
    assert record["action"] == "promote" and record["actor"] == "ada" and record["at"]
    assert record["override"] == "fairness" and record["reason"] == "pilot, reviewed by legal"
    assert record["violations"][0] | {"gap": 0} == {
        "attribute": "region", "metric": "tpr", "gap": 0, "limit": 0.3, "high": "apac", "low": "emea"
    }  # fmt: skip


def test_missing_fairness_results_pass_or_block_as_configured(tmp_path):
    publish(tmp_path)
    block = parse_governance_config({"gate": {"on_missing": "block"}})
    with pytest.raises(FairnessGateError, match="fairness results missing"):
        promote(tmp_path, "m", 1, governance=block)
    assert promote(tmp_path, "m", 1, governance=CONFIG).to_version == 1


def test_the_promote_command_runs_the_gate_and_its_override(tmp_path, capsys):
    publish(tmp_path, UNFAIR)
    config = tmp_path / "gate.yaml"
    config.write_text("gate:\n  max_gaps:\n    tpr: 0.3\n")
    base = ["--models-dir", str(tmp_path), "promote", "m", "1", "--governance-config", str(config)]
    assert models_main(base) == 2
    assert "region: tpr gap 0.4100" in capsys.readouterr().err
    assert models_main([*base, "--override-fairness"]) == 2
    assert "--override-fairness needs --reason" in capsys.readouterr().err
    assert models_main([*base, "--override-fairness", "--reason", "accepted risk", "--actor", "bob"]) == 0
    record = read_audit(tmp_path, "m")[-1]
    assert (record["actor"], record["override"], record["reason"]) == ("bob", "fairness", "accepted risk")
    assert read_alias_state(tmp_path, "m").production == 1


def test_binary_cards_carry_a_fairness_section(tmp_path):
    report = {
        "threshold": 0.5,
        "min_group_size": 30,
        "attributes": {
            "region": {
                "groups": {
                    "apac": {"n": 80, "selection_rate": 0.5, "tpr": 0.9, "fpr": 0.2, "mean_predicted": 0.5,
                             "observed_rate": 0.45, "ece": 0.04},
                    "mars": {"n": 4, "selection_rate": 1.0, "tpr": 1.0, "fpr": 1.0, "mean_predicted": 0.9,
                             "observed_rate": 0.2, "ece": 0.5},
                },
                "gaps": UNFAIR["gaps"]["region"],
            }
        },
        "missing_attributes": {"rep_tenure": "the evaluation frame has no `rep_tenure_days` column"},
        "summary": UNFAIR,
    }  # fmt: skip
    version = publish(tmp_path, UNFAIR)
    (version.path / FAIRNESS_FILE).write_text(json.dumps(report))
    card = render_model_card(version.metadata, {}, {}, report)
    section = card.split("## Fairness")[1].split("\n## ")[0]
    assert "| region | - | 0.410 (apac vs emea) | 0.050 (a vs b) |" in section
    assert "| mars (not judged) | 4 |" in section
    assert "`rep_tenure` not evaluated" in section
    assert "## Fairness" in (version.path / "MODEL_CARD.md").read_text()  # from metadata's summary at publish
    assert "not recorded" in render_model_card({"target_kind": "binary"}, {}, {}).split("## Fairness")[1]
    assert "## Fairness" not in render_model_card({"target_kind": "regression"}, {}, {})
