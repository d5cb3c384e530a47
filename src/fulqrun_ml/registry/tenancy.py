"""Which organisations may use a model version: per-organisation versions, or shared ones.

A version whose metadata names `organization_id` was trained on that organisation's data only and is served to
it alone; a version without it is shared (trained across organisations on organisation-scoped features, as every
version published before tenancy existed). `version_for_org` is the one check the serving and scoring paths
call; another organisation's version is refused like a missing one.
"""

from __future__ import annotations

from pathlib import Path

from fulqrun_ml.data.tenancy import TenantAccessError, check_org
from fulqrun_ml.registry.store import ModelVersion, get_version

ORG_KEY = "organization_id"


def version_for_org(models_dir: Path, name: str, version: int | str, organization_id: str) -> ModelVersion:
    """The version, when it is shared or belongs to `organization_id`; else a refusal naming only the caller."""
    org = check_org(organization_id)
    chosen = get_version(models_dir, name, version)
    owner = chosen.metadata.get(ORG_KEY)
    if owner is not None and str(owner) != org:
        raise TenantAccessError(f"model '{name}' version {version} is not found in organisation '{org}'")
    return chosen
