"""Model registry: immutable versions, aliases (candidate/production/archived), audit log, model cards."""

from fulqrun_ml.registry.alias_state import ALIASES, AliasState, read_alias_state, resolve_alias
from fulqrun_ml.registry.aliases import AliasChange, promote, rollback
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.catalog import list_model_versions, list_models, serving_version, show_version
from fulqrun_ml.registry.diff import VersionDiff, diff
from fulqrun_ml.registry.store import ModelVersion, get_version, list_versions, publish_version

__all__ = [
    "ALIASES",
    "AliasChange",
    "AliasState",
    "ModelVersion",
    "VersionDiff",
    "diff",
    "get_version",
    "list_model_versions",
    "list_models",
    "list_versions",
    "promote",
    "publish_version",
    "read_alias_state",
    "read_audit",
    "resolve_alias",
    "rollback",
    "serving_version",
    "show_version",
]
