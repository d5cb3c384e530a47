"""What the dashboard reads, found once at start-up: the CRM warehouse, the registry, reports/ and Triton.

Why a context object: each page needs a different subset of the platform's outputs, and each may be missing
(no model trained yet, no recommendations written). The context resolves what exists and, for what does not,
keeps the command that would produce it, so a page shows an empty state naming that command instead of
raising. The embedded default CRM is the one the production deal-win model was trained on (its lineage names
the simulator's arguments), so the open deals the model scored are the ones the dashboard lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.dashboard.queries import ScopedWarehouse
from fulqrun_ml.dashboard.view_store import FileViewStore, ViewStore, open_view_store
from fulqrun_ml.dashboard.warehouse import ensure_warehouse, open_warehouse
from fulqrun_ml.data.crm_duckdb import DuckDBSettings
from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.errors import FulqrunMLError, RegistryError
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.store import ModelVersion, get_version, list_versions

log = logging.getLogger(__name__)
OPEN_DEALS_FILE = "open_deals.parquet"  # written by every deal-win run (pipelines/end_to_end.py reads it too)
CUSTOMERS_FILE = "customers.parquet"  # written by every account_churn / account_expansion run (AccountBuilder)
TASKS = ("deal_win", "lead_conversion", "account_churn", "account_expansion", "close_timing", "nba_uplift")


@dataclass
class Missing:
    """A data source that does not exist yet, and the command that makes it."""

    what: str
    command: str


@dataclass
class DashboardContext:
    models_dir: Path
    reports_dir: Path
    warehouse: ScopedWarehouse
    crm_dir: Path
    triton_url: str | None = None
    recommendations: Path | None = None
    views_file: Path = Path("configs/dashboard/views.json")
    logs_dir: Path = Path("logs")
    deal_model: ModelVersion | None = None
    open_deal_features: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    view_store: ViewStore | None = None  # None: the views file
    insight_client: Any | None = None  # insights.client.GuardedLLMClient when a provider is configured

    def views(self) -> ViewStore:
        """Where custom views are saved: the configured store, else the views file."""
        return self.view_store if self.view_store is not None else FileViewStore(self.views_file)

    def crm_tables(self) -> Any:
        """The CRM export as tables, loaded on first use (only the probability history needs raw rows)."""
        import threading

        lock = self.extra.setdefault("crm_lock", threading.Lock())
        with lock:
            if "crm_tables" not in self.extra:
                from fulqrun_ml.data.sources import DirectorySource

                self.extra["crm_tables"] = DirectorySource(self.crm_dir).load()
        return self.extra["crm_tables"]

    def account_scores(self, task: str) -> tuple[ModelVersion, pd.DataFrame] | Missing:
        """(version, company_id -> probability) of an account model's customers, scored once by its ONNX graph."""
        key = f"account_scores:{task}"
        if key not in self.extra:
            model = self.production(task)
            if isinstance(model, Missing):
                return model
            scores, _ = _scoring_rows_scored(model, CUSTOMERS_FILE, "company_id")
            if scores is None:
                return Missing(
                    f"{task} v{model.version}: its run left no {CUSTOMERS_FILE}", f"fulqrun-ml train task={task}"
                )
            self.extra[key] = (model, scores)
        return self.extra[key]

    def production(self, task: str) -> ModelVersion | Missing:
        """The version a task's `production` alias points to, else its newest, else how to make one."""
        if not list_versions(self.models_dir, task):
            return Missing(
                f"no '{task}' model in {self.models_dir}",
                f"fulqrun-ml train task={task} && fulqrun-ml export --task {task}",
            )
        try:
            return get_version(self.models_dir, task, "production")
        except RegistryError:
            return get_version(self.models_dir, task, "latest")

    def report(self, name: str, command: str) -> dict[str, Any] | Missing:
        path = self.reports_dir / name
        if not path.is_file():
            return Missing(f"no {path}", command)
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            return Missing(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})", command)


def default_crm_dir(models_dir: Path, cache_dir: Path) -> Path:
    """The simulated CRM of the deal-win model's lineage (production, else latest; else the training default)."""
    source: dict[str, Any] | None = None
    try:
        try:
            version = get_version(models_dir, "deal_win", "production")
        except RegistryError:
            version = get_version(models_dir, "deal_win", "latest")
        source = json.loads((version.path / "lineage.json").read_text())["config"]["data"]["source"]
    except (RegistryError, FileNotFoundError, KeyError, json.JSONDecodeError):
        source = None
    if not source or "simulate_crm" not in str(source.get("_target_", "")):
        from omegaconf import OmegaConf

        source = OmegaConf.to_container(compose_config("train").data.source, resolve=True)  # type: ignore[assignment]
    kwargs = {k: v for k, v in source.items() if not k.startswith("_")}  # type: ignore[union-attr]
    key = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()[:12]
    out = cache_dir / f"crm-{key}"
    if not (out / "crm_export.json").is_file():
        from fulqrun_ml.data.simulator import simulate_crm
        from fulqrun_ml.data.sources import write_crm_directory

        log.info("simulating the embedded default CRM %s into %s", kwargs, out)
        tmp = cache_dir / f".tmp-crm-{key}"
        write_crm_directory(simulate_crm(**kwargs).tables, tmp)
        tmp.rename(out)
    return out


def _scoring_rows_scored(
    version: ModelVersion, file: str, entity: str
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The rows the model's run scored at extraction (`file` in its run dir), scored offline by the exported graph
    (what Triton serves): (entity, model_probability) and the feature rows; (None, None) when the run left none."""
    from fulqrun_ml.export.onnx_export import onnx_probabilities
    from fulqrun_ml.features.spec import FittedFeatureSpec

    try:
        run_dir = Path(json.loads((version.path / "lineage.json").read_text())["run_dir"])
        features = read_snapshot(run_dir / file)
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
        log.warning("no %s for %s v%s: %s", file, version.name, version.version, exc)
        return None, None
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    probabilities = onnx_probabilities(version.path / "model.onnx", spec, features)
    scores = pd.DataFrame({entity: features[entity].astype(str), "model_probability": probabilities})
    return scores, features


def _insight_client(config: Path | None) -> Any | None:
    """The guarded LLM client of an insights config (configs/insights/*.yaml); None when offline (the default)."""
    if config is None:
        return None
    import yaml

    if not Path(config).is_file():
        raise FulqrunMLError(f"--insights-config {config}: no such file")
    try:
        cfg = yaml.safe_load(Path(config).read_text()) or {}
    except yaml.YAMLError as exc:
        raise FulqrunMLError(f"--insights-config {config}: not valid YAML ({type(exc).__name__})") from None
    if not isinstance(cfg, dict):
        raise FulqrunMLError(f"--insights-config {config}: expected a mapping of settings")
    if cfg.get("provider", "offline") == "offline":
        return None
    from fulqrun_ml.insights.commands import make_client  # heavy imports, only when a provider is configured

    return make_client(cfg, set())


def build_context(
    models_dir: Path,
    reports_dir: Path,
    cache_dir: Path,
    crm_dir: Path | None = None,
    triton_url: str | None = None,
    organizations: tuple[str, ...] | None = None,
    recommendations: Path | None = None,
    views_file: Path | None = None,
    logs_dir: Path | None = None,
    memory_limit: str = "2GB",
    views_dsn_env: str | None = None,
    insights_config: Path | None = None,
) -> DashboardContext:
    """Resolve every source once; the only hard requirement is a CRM (the simulator always provides one)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    views_path = views_file or cache_dir / "views.json"
    store = open_view_store(views_path, views_dsn_env)  # first: a bad store setting fails before the slow parts
    insight_client = _insight_client(insights_config)
    crm = Path(crm_dir) if crm_dir is not None else default_crm_dir(models_dir, cache_dir)
    if not crm.is_dir():
        raise FulqrunMLError(f"--crm-dir {crm}: no such directory (write one with `fulqrun-ml` data exports)")
    path = ensure_warehouse(crm, cache_dir, DuckDBSettings(memory_limit=memory_limit))
    con, info = open_warehouse(path)
    deal_model: ModelVersion | None = None
    scores = features = None
    if list_versions(models_dir, "deal_win"):
        try:
            deal_model = get_version(models_dir, "deal_win", "production")
        except RegistryError:
            deal_model = get_version(models_dir, "deal_win", "latest")
        scores, features = _scoring_rows_scored(deal_model, OPEN_DEALS_FILE, "opportunity_id")
    try:
        warehouse = ScopedWarehouse(con, info.extracted_at, organizations, scores)
    except ValueError as exc:
        raise FulqrunMLError(str(exc)) from None
    return DashboardContext(
        models_dir=models_dir,
        reports_dir=reports_dir,
        warehouse=warehouse,
        crm_dir=crm,
        triton_url=triton_url,
        recommendations=recommendations,
        views_file=views_path,
        view_store=store,
        insight_client=insight_client,
        logs_dir=logs_dir or models_dir.parent / "logs",
        deal_model=deal_model,
        open_deal_features=features,
    )
