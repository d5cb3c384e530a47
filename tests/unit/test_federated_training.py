"""A federated run end to end on real simulated organisations, real Lightning local training and the real socket
protocol: every message the server received obeys the schema (deltas of the model's parameters, counts, scalar
metrics, FeatureSpec statistics) and the run directory is a tabular run whose lineage says it was federated.

The fast test runs the organisations as threads (the same client code, without paying two interpreter starts);
the slow one spawns real processes and publishes through the registry."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.federated.aggregate import shapes_of, shared_state
from fulqrun_ml.federated.client import run_client
from fulqrun_ml.federated.local import build_net
from fulqrun_ml.federated.messages import decode
from fulqrun_ml.federated.train import compose_config, train_federated
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.pipelines.tabular import TabularPipeline
from fulqrun_ml.registry.run_record import RunRecord

OVERRIDES = [
    "federated.rounds=2",
    "federated.clients=2",
    "data.source.n_opportunities=400",
    "data.source.days=450",
    "trainer.enable_progress_bar=false",
]


def thread_clients(address: str, authkey: bytes, profiles, config_yaml: str) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=run_client, args=(address, authkey, vars(p), i, config_yaml), daemon=True)
        for i, p in enumerate(profiles)
    ]
    for thread in threads:
        thread.start()
    return threads


def check_messages(messages: list[tuple[str, bytes]], run_dir: Path) -> None:
    """Decode every received message under the strict schema against the final model's parameters."""
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    record = RunRecord.load(run_dir)
    shapes = shapes_of(shared_state(build_net(record.net_config, spec)))
    kinds = []
    for who, data in messages:
        message = decode(data, who, shapes)
        kinds.append(message.type)
        if message.type in ("update", "masked_update"):
            assert set(message.tensors) == set(shapes)
        else:
            assert not message.tensors
    update = "masked_update" if "public_key" in kinds else "update"
    assert set(kinds) <= {"hello", "stats", update, "metrics", "public_key"}
    assert kinds.count(update) == 2 * 2 and kinds.count("stats") == 2


def test_federated_run_sends_only_aggregates_and_records_lineage(tmp_path: Path) -> None:
    cfg = compose_config(["federated=fedprox", f"paths.root_dir={tmp_path}", *OVERRIDES])
    received: list[tuple[str, bytes]] = []
    result = train_federated(
        cfg, tmp_path / "run", tap=lambda who, data: received.append((who, data)), launch=thread_clients
    )
    run_dir = Path(result["run_dir"])
    check_messages([m for m in received if m[0] != "?"], run_dir)
    federated = RunRecord.load(run_dir).extra["federated"]
    assert federated["algorithm"] == "fedprox" and federated["mu"] == 0.01 and federated["rounds"] == 2
    assert federated["clients"] == ["org_large", "org_upmarket"] and not federated["events"]
    assert isinstance(load_pipeline(run_dir), TabularPipeline)
    per_org = result["metrics"]["per_organisation"]
    assert set(per_org) == {"org_large", "org_upmarket"}
    # A holdout AUC is recorded; its level is not asserted: 2 rounds of 1 epoch on ~430 training rows sit near
    # chance (0.46 seen once on CI, where thread clients' update order varies). Quality over seeds is measured in
    # reports/federated.md against centralised and local-only training.
    assert 0.0 <= result["metrics"]["model"]["auc"] <= 1.0
    assert not list(tmp_path.glob(".*staging"))


@pytest.mark.slow
def test_spawned_organisations_train_and_publish(tmp_path: Path) -> None:
    """Spawned processes with secure aggregation and client-level DP on: the server receives masked updates only,
    and epsilon reaches the run record, the lineage and the model card."""
    secure = ["federated.secure_aggregation=true", "federated.dp.noise_multiplier=0.5", "federated.dp.clip_norm=0.5"]
    cfg = compose_config([f"paths.root_dir={tmp_path}", *OVERRIDES, *secure])
    received: list[tuple[str, bytes]] = []
    result = train_federated(cfg, tmp_path / "run", tap=lambda who, data: received.append((who, data)))
    check_messages(received, Path(result["run_dir"]))
    privacy = result["extra"]["privacy"]
    assert privacy["steps"] == 2 and privacy["noise_multiplier"] == 0.5 and 0 < privacy["epsilon"] < float("inf")
    assert result["extra"]["federated"]["secure_aggregation"] and not result["extra"]["federated"]["events"]
    version, parity = export_run(Path(result["run_dir"]), tmp_path / "models")
    assert parity < 1e-4
    lineage = (version.path / "lineage.json").read_text()
    assert '"algorithm": "fedavg"' in lineage and '"secure_aggregation": true' in lineage
    card = (version.path / "MODEL_CARD.md").read_text()
    assert "client-level DP-FedAvg" in card and f"ε = {privacy['epsilon']:.3g}" in card
