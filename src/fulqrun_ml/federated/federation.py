"""One federation end to end: start the organisations' processes, fit the FeatureSpec, run the rounds, evaluate.

Model selection without pooled validation rows: in every round each client reports the log loss of the global
model it received on its own validation split, and the server keeps the global state with the lowest
example-weighted validation loss (as early stopping does centrally). The final evaluation (val and test metrics
per organisation) runs on that state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.features.spec import FeatureSpec, FittedFeatureSpec
from fulqrun_ml.federated.aggregate import shared_state
from fulqrun_ml.federated.client import client_main
from fulqrun_ml.federated.client_dp import ClientDP, accounting
from fulqrun_ml.federated.feature_stats import fit_from_statistics
from fulqrun_ml.federated.local import build_net
from fulqrun_ml.federated.messages import FederatedError
from fulqrun_ml.federated.organisations import OrganisationProfile
from fulqrun_ml.federated.server import FederatedServer

log = logging.getLogger(__name__)
ALGORITHMS = ("fedavg", "fedprox")


@dataclass(frozen=True)
class FederatedSettings:
    """`cfg.federated`, checked: the algorithm, its rounds and local epochs, FedProx's mu, the deadlines."""

    algorithm: str
    rounds: int
    local_epochs: int = 1
    mu: float = 0.0
    round_timeout_s: float = 300.0
    connect_timeout_s: float = 120.0
    secure_aggregation: bool = False
    dp: ClientDP = field(default_factory=ClientDP)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise FederatedError(f"federated.algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.rounds < 1 or self.local_epochs < 1:
            raise FederatedError("federated.rounds and federated.local_epochs must be >= 1")
        if self.algorithm == "fedprox" and self.mu <= 0:
            raise FederatedError(f"federated.mu must be > 0 for fedprox, got {self.mu}")
        if self.algorithm == "fedavg" and self.mu != 0:
            raise FederatedError("federated.mu is FedProx's proximal weight; use federated=fedprox to set it")

    @classmethod
    def from_config(cls, fed: Mapping[str, Any]) -> FederatedSettings:
        keys = ("algorithm", "rounds", "local_epochs", "mu", "round_timeout_s", "connect_timeout_s")
        secure = fed.get("secure_aggregation", False)
        if not isinstance(secure, bool):
            raise FederatedError(f"federated.secure_aggregation must be true or false, got {secure!r}")
        return cls(
            **{k: fed[k] for k in keys if k in fed}, secure_aggregation=secure, dp=ClientDP.from_config(fed.get("dp"))
        )


@dataclass
class FederationResult:
    spec: FittedFeatureSpec
    state: dict[str, np.ndarray]
    net_config: dict[str, Any]
    chosen_round: int
    history: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    clients: list[str]
    train_rows: dict[str, int]
    statistics_hash: str
    settings: FederatedSettings
    privacy: dict[str, Any] | None = None  # client-level DP accounting (client_dp.accounting), when DP was on
    extra: dict[str, Any] = field(default_factory=dict)


def declared_spec(cfg: DictConfig) -> FeatureSpec:
    """The task's FeatureSpec declaration, without building any data (the datamodule's constructor is cheap)."""
    return instantiate(cfg.data, source=None).feature_spec


def spawn_clients(address: str, authkey: bytes, profiles: Sequence[OrganisationProfile], config_yaml: str) -> list:
    """One fresh interpreter per organisation (`spawn`: no memory shared with the server)."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=client_main,
            args=(address, authkey, dataclasses.asdict(p), i, config_yaml),
            name=f"fulqrun-fed-{p.name}",
            daemon=True,
        )
        for i, p in enumerate(profiles)
    ]
    for process in processes:
        process.start()
    return processes


ClientLauncher = Callable[[str, bytes, Sequence[OrganisationProfile], str], list]


def run_federation(
    cfg: DictConfig,
    profiles: Sequence[OrganisationProfile],
    settings: FederatedSettings,
    tap: Callable[[str, bytes], None] | None = None,
    launch: ClientLauncher = spawn_clients,
) -> FederationResult:
    """Run the organisations (spawned processes by default) against one server; return the selected model.
    `launch` returns handles with join/is_alive (and terminate, for processes)."""
    server = FederatedServer(
        secrets.token_bytes(32), settings.round_timeout_s, secure=settings.secure_aggregation, dp=settings.dp
    )
    server.tap = tap
    clients = launch(server.address, server.authkey, profiles, OmegaConf.to_yaml(cfg, resolve=True))
    try:
        server.accept(len(profiles), settings.connect_timeout_s)
        return _federate(cfg, server, settings)
    finally:
        server.close()
        for client in clients:
            client.join(timeout=30)
            if client.is_alive() and hasattr(client, "terminate"):  # only our own children, by handle
                client.terminate()
                client.join(timeout=5)


def _federate(cfg: DictConfig, server: FederatedServer, settings: FederatedSettings) -> FederationResult:
    statistics = server.collect("stats", "feature statistics")
    if not statistics:
        raise FederatedError(f"no organisation sent feature statistics: {describe(server.events)}")
    headers = {who: message.header for who, message in sorted(statistics.items())}
    spec = fit_from_statistics(declared_spec(cfg), headers.values())
    server.broadcast("spec", {"spec": spec.to_dict()})
    if settings.secure_aggregation:
        server.exchange_keys()
    pl.seed_everything(int(cfg.seed), workers=True)
    net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
    state = shared_state(build_net(net_config, spec))
    best: tuple[float, int, dict[str, np.ndarray]] | None = None
    history = []
    for round_index in range(1, settings.rounds + 1):
        if not server.clients:
            raise FederatedError(f"round {round_index}: no organisation left: {describe(server.events)}")
        new_state, summary = server.run_round(round_index, state, settings.mu, settings.local_epochs)
        history.append(summary)
        loss = summary["val_log_loss_before"]
        if loss is not None and (best is None or loss < best[0]):
            best = (loss, round_index - 1, state)  # `state` is what this round's clients validated
        state = new_state
    metrics = server.evaluate(state)
    chosen = settings.rounds
    final_loss = weighted(metrics, "val", "log_loss")
    if best is not None and final_loss is not None and best[0] < final_loss:
        chosen, state = best[1], best[2]
        metrics = server.evaluate(state)
    if not metrics:
        raise FederatedError(f"no organisation evaluated the final model: {describe(server.events)}")
    digest = hashlib.sha256(json.dumps(headers, sort_keys=True).encode()).hexdigest()[:16]
    return FederationResult(
        spec=spec,
        state=state,
        net_config=net_config,
        chosen_round=chosen,
        history=history,
        metrics=metrics,
        events=list(server.events),
        clients=list(headers),
        train_rows={who: int(h["n_rows"]) for who, h in headers.items()},
        statistics_hash=digest,
        settings=settings,
        privacy=accounting(settings.dp, server.noised_rounds, len(headers)) if settings.dp.enabled else None,
    )


def weighted(metrics: Mapping[str, Mapping[str, Any]], split: str, name: str) -> float | None:
    """The n-weighted mean of one metric over the organisations that have it on `split`."""
    pairs = [(m[split][name], m[split]["n"]) for m in metrics.values() if m[split].get(name) is not None]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


def describe(events: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{e['client_id']} ({e['stage']}): {e['reason']}" for e in events) or "no events"
