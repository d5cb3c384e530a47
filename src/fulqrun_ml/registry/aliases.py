"""Promote and roll back: move a model's aliases, under a lock, with an audit record for every change.

Rules (kept small on purpose):
- `production` and `candidate` point at one version each; `archived` is a set.
- Promoting a version to `production` pushes it on the production history and, if it was the candidate
  or archived, clears that; promoting to `candidate` un-archives it.
- Archiving the production version is refused: roll back or promote another version first, so that a
  served model is never silently retired.
- `rollback` pops the production history: production returns to the version it pointed at before the
  current one (repeated rollbacks keep walking back). The rolled-back version is left unaliased.

Each change returns an `AliasChange`; its `to_version` is what the serving layer should load
(the CLI reloads Triton with it, the registry itself knows nothing about serving).

Fairness gate: with a `governance` config, promoting to a gated alias (production by default) first compares
the version's recorded fairness gaps with the configured maxima (`fairness_gate.py`), under the same lock, and
refuses with `FairnessGateError` naming the group and gap. `override_reason` lets it through; the promote
record in the audit log then carries `override: fairness`, the reason and the violations it overrode, next to
who and when.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.alias_state import ALIASES, AliasState, read_alias_state, write_alias_state
from fulqrun_ml.registry.audit import append_audit, current_actor
from fulqrun_ml.registry.fairness_gate import FairnessGateError, GovernanceConfig, gate_message, gate_violations
from fulqrun_ml.registry.locking import model_lock
from fulqrun_ml.registry.names import model_root
from fulqrun_ml.registry.roles import authorize
from fulqrun_ml.registry.store import get_version


@dataclass(frozen=True)
class AliasChange:
    """What moved: `alias` of model `name` from `from_version` to `to_version` (None = unset), by whom."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    action: str
    at: str

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


def promote(
    models_dir: Path,
    name: str,
    version: int | str,
    alias: str = "production",
    actor: str | None = None,
    governance: GovernanceConfig | None = None,
    override_reason: str | None = None,
) -> AliasChange:
    """Point `alias` at `version` (a number, "latest" or another alias such as "candidate").

    `governance` turns on the fairness gate; `override_reason` (non-empty) overrides a failing gate."""
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias '{alias}'; use one of {list(ALIASES)}")
    if override_reason is not None and not override_reason.strip():
        raise RegistryError("--reason: an override of the fairness gate needs a non-empty reason")
    root = model_root(models_dir, name)
    with model_lock(root):
        # Roles (roles.py), when configured: researchers propose candidates, approvers decide production.
        authorize(models_dir, name, "archive" if alias == "archived" else "promote", actor, alias)
        chosen = get_version(models_dir, name, version)  # resolved under the lock
        target = chosen.version
        details: dict = {}
        if governance is not None:
            violations = gate_violations(chosen.metadata, alias, governance)
            if violations and override_reason is None:
                raise FairnessGateError(gate_message(name, target, alias, violations, governance.source), violations)
            if violations:
                details = {
                    "override": "fairness",
                    "reason": override_reason.strip(),
                    "violations": [v.to_dict() for v in violations],
                }
        state = read_alias_state(models_dir, name)
        if alias == "archived":
            if state.production == target:
                raise RegistryError(
                    f"version {target} of '{name}' is in production; roll back or promote another version "
                    "before archiving it"
                )
            before = target if target in state.archived else None
            new = replace(
                state,
                archived=tuple(sorted({*state.archived, target})),
                candidate=None if state.candidate == target else state.candidate,
            )
            action = "archive"
        elif alias == "candidate":
            before = state.candidate
            new = replace(state, candidate=target, archived=tuple(v for v in state.archived if v != target))
            action = "promote"
        else:
            before = state.production
            history = state.production_history
            new = replace(
                state,
                production=target,
                production_history=history if before == target else (*history, target),
                candidate=None if state.candidate == target else state.candidate,
                archived=tuple(v for v in state.archived if v != target),
            )
            action = "promote"
        return _commit(models_dir, name, state, new, action, alias, before, target, actor, details)


def rollback(models_dir: Path, name: str, actor: str | None = None) -> AliasChange:
    """Production returns to the previous production version (from the alias history)."""
    root = model_root(models_dir, name)
    with model_lock(root):
        authorize(models_dir, name, "rollback", actor)
        state = read_alias_state(models_dir, name)
        if state.production is None:
            raise RegistryError(f"model '{name}' has no production version to roll back")
        history = list(state.production_history)
        if history and history[-1] == state.production:
            history.pop()
        if not history:
            raise RegistryError(
                f"model '{name}' has no earlier production version than v{state.production} to roll back to"
            )
        target = history[-1]
        get_version(models_dir, name, target)  # still published (versions are never deleted, but check)
        new = replace(
            state,
            production=target,
            production_history=tuple(history),
            archived=tuple(v for v in state.archived if v != target),
        )
        return _commit(models_dir, name, state, new, "rollback", "production", state.production, target, actor)


def _commit(
    models_dir: Path,
    name: str,
    old: AliasState,
    new: AliasState,
    action: str,
    alias: str,
    before: int | None,
    after: int | None,
    actor: str | None,
    details: dict | None = None,
) -> AliasChange:
    """Write the new alias state, then the audit record (both under the caller's lock); `details` (a gate
    override) go into the record."""
    root = model_root(models_dir, name)
    if new == old:
        # Nothing moved (e.g. promoting the production version again): no write, no audit line.
        return AliasChange(name, alias, before, after, current_actor(actor), action, "")
    write_alias_state(models_dir, name, new)
    record = append_audit(
        root,
        action,
        actor,
        model=name,
        alias=alias,
        from_version=before,
        to_version=after,
        aliases=new.to_dict(),
        **(details or {}),
    )
    return AliasChange(name, alias, before, after, record["actor"], action, record["at"])
