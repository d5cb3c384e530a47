"""The online store as one organisation sees it: keys namespaced by organisation, writes checked, reads confined.

Why a wrapper and not a flag on `OnlineStore`: the shared Redis layout (INTERFACE.md) stays as it is; a tenant's
rows are stored under the scoped id `@<org>/<entity_id>` (data/tenancy.py), so the key of organisation A's deal
`d1` is `fq:fv:{view}:{version}:@A/d1`. Consequences:
- a read for A builds only `@A/...` keys, so B's deal id asked by A finds no key and comes back `unknown` with
  empty features: there is no code path from A's lookup to B's row, even before any ownership check;
- the Triton `<model>_by_id` backend reads the same keys, so a gateway that prefixes the caller's organisation
  (`scoped_id`) to each id gets the same confinement without a change to the backend;
- a write must say, per row, which organisation the row belongs to (column `organization_id`); a row of another
  organisation refuses the whole batch (naming the row) before anything reaches Redis.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fulqrun_ml.data.tenancy import SCOPE_MARK, TenantAccessError, check_org, scoped_id
from fulqrun_ml.online.store import OnlineStore, _glob_escape
from fulqrun_ml.online.views import KEY_PREFIX, FeatureView

ORG_COLUMN = "organization_id"


class TenantOnlineStore:
    """`OnlineStore` confined to one organisation's keys (see the module docstring)."""

    def __init__(self, store: OnlineStore, organization_id: str) -> None:
        self.store = store
        self.organization_id = check_org(organization_id)

    def _scoped(self, entity_id: object) -> str:
        return scoped_id(self.organization_id, entity_id)

    def write(self, view: FeatureView, features: pd.DataFrame, seq: int | Sequence[int] = 0) -> int:
        """Write this organisation's rows; refused whole when any row is another organisation's or unlabelled."""
        if ORG_COLUMN not in features.columns:
            raise TenantAccessError(
                f"rows written to {view.name} for organisation '{self.organization_id}' carry no '{ORG_COLUMN}' "
                f"column: each row must say whose it is"
            )
        foreign = features[ORG_COLUMN].astype(str).ne(self.organization_id).to_numpy().nonzero()[0]
        if len(foreign):
            row = int(foreign[0])
            raise TenantAccessError(
                f"row {row} ({view.entity_column} '{features[view.entity_column].iloc[row]}') written to {view.name} "
                f"belongs to another organisation than '{self.organization_id}': nothing was written"
            )
        scoped = features.drop(columns=[ORG_COLUMN]).assign(
            **{view.entity_column: [self._scoped(e) for e in features[view.entity_column]]}
        )
        return self.store.write(view, scoped, seq)

    def read(self, view: FeatureView, entity_ids: Sequence[str], now: pd.Timestamp | None = None) -> pd.DataFrame:
        """The rows of these ids in this organisation, as `OnlineStore.read`; another organisation's id reads as
        `unknown` with no features (it is simply not in this namespace)."""
        frame = self.store.read(view, [self._scoped(e) for e in entity_ids], now)
        frame[view.entity_column] = [str(e) for e in entity_ids]
        return frame

    def entity_ids(self, view: FeatureView) -> list[str]:
        """This organisation's ids with a row under the view version."""
        prefix = self._scoped("")
        return [key[len(prefix) :] for key in self.store.entity_ids(view) if key.startswith(prefix)]


def entity_of_key(key: str) -> str:
    """The entity id a feature key holds (`fq:fv:{view}:{version}:{id}`), without its organisation scope."""
    parts = key.split(":", 4)  # fq, fv, view, version, entity
    entity = parts[4] if len(parts) == 5 else ""
    if entity.startswith(SCOPE_MARK) and "/" in entity:
        entity = entity.split("/", 1)[1]
    return entity


def keys_of_entities(store: OnlineStore, entity_ids: Sequence[str]) -> list[str]:
    """Every feature key (any view, any version, any organisation's namespace or none) of these entity ids:
    what erasure deletes and then re-scans for."""
    wanted = {str(e) for e in entity_ids}
    if not wanted:
        return []
    with store._guard("scanning feature keys"):
        return [
            key
            for key in store.client.scan_iter(match=_glob_escape(KEY_PREFIX) + ":*", count=1000)
            if entity_of_key(key) in wanted
        ]
