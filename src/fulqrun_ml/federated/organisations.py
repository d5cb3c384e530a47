"""The simulated organisations of a federation: one CRM each, with its own size, segment mix and win rate.

Why profiles on top of the simulator, not a new story: `simulate_crm` already generates one organisation per
call, and `DriftScenario` with an onset before day 0 moves a whole CRM's story by a known amount. A `downturn`
with `logit_shift` s shifts every deal's true win logit by s (s > 0 makes an easier market). An `industry_mix`
re-draws a share of deals from one industry's companies. So heterogeneity has a known truth: each org's oracle
win probability comes from the same simulator with its own parameters. docs/simulator.md, section "Federated
organisations", records this.

An organisation's data is built inside its own client process from these few parameters; its rows never exist
anywhere else (the benchmark rebuilds them in its own process, deterministically, for the centralised arm).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from fulqrun_ml.data.simulator_drift import DriftScenario
from fulqrun_ml.datamodules.tabular import TabularDataModuleBase
from fulqrun_ml.federated.messages import FederatedError

MIN_OPPORTUNITIES = 200


@dataclass(frozen=True)
class OrganisationProfile:
    """One organisation: its share of the federation's opportunities, its market and its segment mix."""

    name: str
    share: float
    win_logit_shift: float = 0.0
    industry: str | None = None
    industry_share: float = 0.0

    def drift(self) -> DriftScenario | None:
        """The simulator scenario that makes this organisation differ, applied from before day 0 (all deals)."""
        if self.industry:
            return DriftScenario(
                kind="industry_mix", onset_day=-1.0, mix_share=self.industry_share, industry=self.industry
            )
        if self.win_logit_shift:
            return DriftScenario(kind="downturn", onset_day=-1.0, logit_shift=self.win_logit_shift)
        return None

    def source_kwargs(self, total_opportunities: int, base_seed: int, index: int) -> dict[str, Any]:
        """simulate_crm arguments: size from the share, companies and reps scaled with it, its own seed."""
        n = max(MIN_OPPORTUNITIES, round(self.share * total_opportunities))
        return {
            "n_opportunities": n,
            "n_companies": max(60, n // 6),
            "n_reps": max(6, n // 250),
            "seed": base_seed * 1000 + 17 * (index + 1),
            "organization_name": self.name,
            "drift": self.drift(),
        }


def profiles_from_config(organisations: Sequence[Mapping[str, Any]], clients: int) -> list[OrganisationProfile]:
    """The first `clients` profiles of the config's list; refuses more clients than profiles, naming the key."""
    if clients < 1:
        raise FederatedError(f"federated.clients must be >= 1, got {clients}")
    if clients > len(organisations):
        raise FederatedError(
            f"federated.clients={clients}: only {len(organisations)} organisation profiles in federated.organisations"
        )
    profiles = [OrganisationProfile(**dict(o)) for o in organisations[:clients]]
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise FederatedError(f"federated.organisations: names must be unique, got {names}")
    return profiles


def organisation_datamodule(cfg: DictConfig, profile: OrganisationProfile, index: int) -> TabularDataModuleBase:
    """This organisation's snapshot datamodule: the configured data and task, on its own simulated CRM."""
    if "source" not in cfg.data or "n_opportunities" not in cfg.data.source:
        raise FederatedError("federated training simulates its organisations: use data=crm_synthetic")
    base = instantiate(cfg.data.source)
    kwargs = profile.source_kwargs(int(cfg.data.source.n_opportunities), int(cfg.seed), index)
    return instantiate(cfg.data, source=functools.partial(base, **kwargs))
