"""Incremental training: `init_from=<model>@<version>` warm-starts from a registry version, or refuses clearly."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.model_card import MODEL_CARD_FILE
from fulqrun_ml.training.train import train
from fulqrun_ml.training.warm_start import (
    WarmStartError,
    check_feature_compatibility,
    load_parent,
    parse_init_from,
)

FAST = ("logger=none", "trainer.enable_progress_bar=false")
NEWER_WINDOW = "data.source.days=760"  # the same CRM, extracted a month later (no new category yet)


@pytest.fixture()
def registry(published, tmp_path):
    """A private copy of the session's published version (v1), so tests may publish into it."""
    version, _ = published
    models_dir = tmp_path / "models"
    shutil.copytree(version.path, models_dir / "deal_win" / "1")
    return models_dir


def test_version_stores_backbone_weights_and_config(published, trained_run):
    version, _ = published
    state = torch.load(version.path / "net_state.pt", weights_only=True)
    trained = torch.load(Path(trained_run["run_dir"]) / "net_state.pt", weights_only=True)
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in state)
    assert json.loads((version.path / "net_config.json").read_text()) == trained_run["net_config"]


def test_init_from_parsing_and_missing_versions(registry):
    assert parse_init_from("deal_win@3") == ("deal_win", "3")
    assert parse_init_from("deal_win@production") == ("deal_win", "production")
    for bad in ("deal_win", "@3", "deal_win@"):
        with pytest.raises(WarmStartError, match="expected <model>@<version>"):
            parse_init_from(bad)
    with pytest.raises(WarmStartError, match="init_from=deal_win@7: model 'deal_win' has no version 7"):
        load_parent(registry, "deal_win@7")
    (registry / "deal_win" / "1" / "net_state.pt").unlink()
    with pytest.raises(WarmStartError, match=r"has no net_state.pt .* re-export"):
        load_parent(registry, "deal_win@1")


def test_vocabulary_or_feature_changes_are_refused_naming_the_field(registry):
    parent = load_parent(registry, "deal_win@latest")
    check_feature_compatibility(parent.spec, parent.spec, "deal_win@1")  # identical: fine
    vocab = {**parent.spec.vocabularies, "industry": [*parent.spec.vocabularies["industry"], "space mining"]}
    grown = replace(parent.spec, vocabularies=vocab)
    with pytest.raises(
        WarmStartError, match=r"field 'industry': vocabulary differs \(new in this window: \['space mining'\]"
    ):
        check_feature_compatibility(parent.spec, grown, "deal_win@1")
    fewer = FittedFeatureSpec.from_dict({**parent.spec.to_dict(), "numeric": parent.spec.to_dict()["numeric"][:-1]})
    with pytest.raises(WarmStartError, match="numeric features differ"):
        check_feature_compatibility(parent.spec, fewer, "deal_win@1")


def test_warm_start_copies_the_parent_weights(registry, compose_train, tmp_path):
    """With zero training batches the warm-started backbone IS the parent's; from scratch it is not."""
    no_steps = (*FAST, NEWER_WINDOW, "trainer.max_epochs=1", "+trainer.limit_train_batches=0")
    warm = train(compose_train(tmp_path / "warm", *no_steps, f"paths.models_dir={registry}", "init_from=deal_win@1"))
    cold = train(compose_train(tmp_path / "cold", *no_steps))
    parent = torch.load(registry / "deal_win" / "1" / "net_state.pt", weights_only=True)
    warm_state = torch.load(Path(warm["run_dir"]) / "net_state.pt", weights_only=True)
    cold_state = torch.load(Path(cold["run_dir"]) / "net_state.pt", weights_only=True)
    assert all(torch.equal(warm_state[k], parent[k]) for k in parent)
    assert not all(torch.equal(cold_state[k], parent[k]) for k in parent)
    assert warm["parent"] == {
        "name": "deal_win",
        "version": 1,
        "data_hash": json.loads((registry / "deal_win" / "1" / "metadata.json").read_text())["data_hash"],
    }
    assert warm["data_hash"] != warm["parent"]["data_hash"]  # a newer window, not the parent's data


def test_incremental_training_publishes_a_child_with_lineage(registry, compose_train, tmp_path):
    run = train(
        compose_train(
            tmp_path / "child",
            *FAST,
            NEWER_WINDOW,
            "trainer.max_epochs=2",
            f"paths.models_dir={registry}",
            "init_from=deal_win@latest",
        )
    )
    assert run["metrics"]["model"]["auc"] > 0.6
    child, _ = export_run(Path(run["run_dir"]), registry, "deal_win")
    lineage = json.loads((child.path / "lineage.json").read_text())
    assert child.version == 2 and lineage["parent"]["version"] == 1 and lineage["init_from"] == "deal_win@latest"
    assert "deal_win v1 (warm start)" in (child.path / MODEL_CARD_FILE).read_text()


def test_a_different_backbone_is_refused(registry, compose_train, tmp_path):
    cfg = compose_train(
        tmp_path / "x",
        *FAST,
        "trainer.max_epochs=1",
        "model.net.hidden_dims=[16]",
        f"paths.models_dir={registry}",
        "init_from=deal_win@1",
    )
    with pytest.raises(WarmStartError, match=r"backbone does not match .*hidden_dims: parent \[128, 64\] vs \[16\]"):
        train(cfg)
    assert issubclass(WarmStartError, FulqrunMLError)
