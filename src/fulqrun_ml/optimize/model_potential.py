"""Account potential from the platform's trained models (`potential.source: models`), term by term.

Why: `estimates.py` gives every account a statistical potential (shrunk deals per year x shrunk segment win rate
x mean won value). The platform also trains deal-win, expansion and churn models that see far more of an
account's state (open pipeline, stage, activity, win history). This module turns their scores into an expected
revenue per account over the next horizon, so territories, assignment and coverage can run on it instead:

    potential = sum over the account's open deals of P(win) x value                     (term `open_deals`)
              + P(expansion) x expansion value                                           (term `expansion`)
              - P(churn) x revenue at risk                                               (term `churn`)

What each term reads from the CRM contract (../shared/CRM_DATA.md):
- **open_deals**: the open opportunities at extraction (`DealWinBuilder.scoring_rows`: not closed_won /
  closed_lost), `opportunities.value`; P(win) = the deal-win model's `probability` (won within its horizon).
- **expansion**: customers are companies with a closed_won `stage_history` row by extraction (the rows of
  `AccountBuilder.scoring_rows`); P(expansion) = P(another won deal within the account horizon); the expansion
  value = the account's mean won `value`, shrunk to the book's mean won value with `value_prior_deals` pseudo
  deals (most accounts have one or two wins).
- **churn**: P(churn) = P(no won deal within the account horizon); revenue at risk = the account's won value
  closed in the last 365 days, scaled to the horizon (its recent revenue run-rate, what churn takes away).
A company that is not a customer has no expansion or churn term (the account models do not score it).

Where a task has no published version under `models_dir`, its term falls back to the statistical estimate:
P(win) of an open deal = its account's shrunk segment win rate; P(expansion) = 1 - exp(-deals per year x
segment win rate x horizon / year) (a Poisson count of wins); P(churn) = 1 - that. The summary's `terms` say
which source each term used. The terms overlap by design of the labels (an open deal that wins is also an
expansion): the definition follows the issue, and docs/optimize.md says so.

The solvers read `potential` = max(signed potential, 0): a territory's load or a coverage ranking must not be
"balanced" by churn losses counting as negative work; the signed value is kept as `potential_signed`.
Scores come from the exported ONNX graph + FittedFeatureSpec through `scoring.bulk.score_table`, the same path
as `fulqrun-ml score`, on the scoring rows the task's builder produces.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.datamodules.task_builders import AccountBuilder, DealWinBuilder
from fulqrun_ml.errors import RegistryError
from fulqrun_ml.optimize.estimates import YEAR_DAYS
from fulqrun_ml.optimize.inputs import OptimizeInputs
from fulqrun_ml.optimize.problem import OptimizeError
from fulqrun_ml.registry.alias_state import POINTER_ALIASES
from fulqrun_ml.registry.store import ModelVersion, get_version, list_versions
from fulqrun_ml.scoring.bulk import score_table

TERMS = {"open_deals": "deal_win", "expansion": "account_expansion", "churn": "account_churn"}
SOURCES = ("estimates", "models")


@dataclass(frozen=True)
class PotentialConfig:
    """The optimize configs' `potential` block."""

    source: str = "estimates"  # estimates | models
    models_dir: str = "models"  # the registry root (`fulqrun-ml export --models-dir`)
    alias: str = "production"  # version of each task's model: an alias, "latest" or a number
    account_horizon_days: int = 90  # expansion / churn horizon when a version does not record its own
    value_prior_deals: float = 5.0  # pseudo-deals shrinking an account's mean won value to the book's


def potential_config(settings: dict | None) -> PotentialConfig:
    """PotentialConfig from the config's `potential` block; an unknown key or source is named."""
    settings = dict(settings or {})
    known = {f.name for f in dataclasses.fields(PotentialConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise OptimizeError(f"potential.{unknown[0]}", f"unknown setting; known: {sorted(known)}")
    cfg = PotentialConfig(**settings)
    if cfg.source not in SOURCES:
        raise OptimizeError("potential.source", f"must be one of {list(SOURCES)}, got {cfg.source!r}")
    return cfg


def resolve_models(models_dir: Path, alias: str) -> dict[str, ModelVersion | None]:
    """Task -> the version `alias` names, or None where the task has no published version (its term falls back).

    Refused, naming the setting: an alias that is not a number, "latest" or a pointer alias; a models dir that
    does not exist or holds none of the three tasks (then nothing would come from a model); an alias not set for
    a task that has versions (the user asked for that version, a silent fallback would hide it)."""
    if not (alias == "latest" or alias.isdigit() or alias in POINTER_ALIASES):
        raise OptimizeError(
            "potential.alias", f"{alias!r} is not a version number, 'latest' or one of {list(POINTER_ALIASES)}"
        )
    if not Path(models_dir).is_dir():
        raise OptimizeError("potential.models_dir", f"{models_dir} does not exist")
    found: dict[str, ModelVersion | None] = {}
    for task in TERMS.values():
        if not list_versions(models_dir, task):
            found[task] = None
            continue
        try:
            found[task] = get_version(models_dir, task, alias)
        except RegistryError as exc:
            raise OptimizeError("potential.alias", str(exc)) from None
    if not any(found.values()):
        raise OptimizeError(
            "potential.models_dir",
            f"{models_dir} holds no published version of any of "
            f"{list(TERMS.values())}; train and export them or use potential.source=estimates",
        )
    return found


def horizon_days(version: ModelVersion, default: int) -> int:
    """The label horizon the version was trained with (its lineage's data config), else `default`."""
    lineage = version.path / "lineage.json"
    if lineage.is_file():
        data = json.loads(lineage.read_text()).get("config", {}).get("data", {})
        if isinstance(data.get("horizon_days"), int | float):
            return int(data["horizon_days"])
    return default


def score_rows(version: ModelVersion, rows: pd.DataFrame, entity: str) -> pd.Series:
    """entity -> the graph's `probability`, scored in bulk by `score_table` (validated against the spec)."""
    with tempfile.TemporaryDirectory(prefix="fulqrun-potential-") as tmp:
        source, target = Path(tmp) / "rows.parquet", Path(tmp) / "scores.parquet"
        rows.to_parquet(source, index=False)
        score_table(version, source, target, keep_columns=[entity], workers=1)
        scores = pd.read_parquet(target)
    return scores.set_index(entity)["probability"].astype(float)


def potential_terms(open_deals: pd.DataFrame, customers: pd.DataFrame, company_ids: pd.Series) -> pd.DataFrame:
    """The arithmetic, per company: open_deals (company_id, value, p_win); customers (company_id, p_expansion,
    p_churn, expansion_value, revenue_at_risk). Returns company_id, the three terms, potential_signed and
    potential (clipped at 0, see the module docstring)."""
    ids = pd.Index(company_ids)
    pipeline = (open_deals["p_win"] * open_deals["value"]).groupby(open_deals["company_id"].to_numpy()).sum()
    cust = customers.set_index("company_id")
    expansion = (cust["p_expansion"] * cust["expansion_value"]).reindex(ids, fill_value=0.0).to_numpy()
    churn = (cust["p_churn"] * cust["revenue_at_risk"]).reindex(ids, fill_value=0.0).to_numpy()
    open_term = pipeline.reindex(ids, fill_value=0.0).to_numpy()
    signed = open_term + expansion - churn
    return pd.DataFrame(
        {
            "company_id": ids.to_numpy(),
            "open_deals_value": open_term,
            "expansion_value": expansion,
            "churn_loss": churn,
            "potential_signed": signed,
            "potential": np.maximum(signed, 0.0),
        }
    )


def _customer_values(deals: pd.DataFrame, customers: pd.Index, now: pd.Timestamp, horizon: int, prior: float):
    """Shrunk mean won value and the won value of the last year scaled to the horizon, per customer."""
    won = deals[deals["won"].astype(bool)]
    overall = float(won["value"].mean()) if len(won) else 0.0
    by = won.groupby("company_id")["value"].agg(["sum", "count"]).reindex(customers, fill_value=0.0)
    value = (by["sum"] + prior * overall) / (by["count"] + prior)
    recent = won[pd.to_datetime(won["closed_at"], utc=True) > now - pd.Timedelta(days=YEAR_DAYS)]
    run_rate = recent.groupby("company_id")["value"].sum().reindex(customers, fill_value=0.0) * horizon / YEAR_DAYS
    return value.to_numpy(), run_rate.to_numpy()


def model_potential(
    tables: CRMTables, accounts: pd.DataFrame, deals: pd.DataFrame, cfg: PotentialConfig
) -> tuple[pd.DataFrame, dict]:
    """Per-account terms and potential (see `potential_terms`) and a report naming each term's source.

    `accounts` needs company_id, deals_per_year and segment_win_rate (the statistical fallbacks);
    `deals` is the closed-deal history (`estimates.closed_deals`) the values are read from."""
    versions = resolve_models(Path(cfg.models_dir), cfg.alias)
    now = tables.extracted_at
    rate = accounts.set_index("company_id")["segment_win_rate"]
    sources: dict[str, dict] = {}

    open_rows = DealWinBuilder().scoring_rows(tables, 0)
    company = tables.opportunities.drop_duplicates("id").set_index("id")["company_id"]
    open_deals = pd.DataFrame(
        {
            "opportunity_id": open_rows["opportunity_id"].to_numpy(),
            "company_id": company.reindex(open_rows["opportunity_id"]).to_numpy(),
            "value": open_rows["value"].to_numpy(dtype=float),
        }
    )
    if (version := versions["deal_win"]) is not None and len(open_rows):
        p_win = score_rows(version, open_rows, "opportunity_id").reindex(open_deals["opportunity_id"]).to_numpy()
        sources["open_deals"] = {"source": "model", "model": version.name, "version": version.version}
    else:
        p_win = rate.reindex(open_deals["company_id"]).fillna(0.0).to_numpy()
        sources["open_deals"] = {"source": "estimates", "rule": "shrunk segment win rate of the account"}
    open_deals["p_win"] = p_win

    exp_version, churn_version = versions["account_expansion"], versions["account_churn"]
    chosen = exp_version or churn_version
    horizon = horizon_days(chosen, cfg.account_horizon_days) if chosen else cfg.account_horizon_days
    customer_rows = AccountBuilder("expansion").scoring_rows(tables, horizon)
    ids = pd.Index(customer_rows["company_id"])
    accounts_idx = accounts.set_index("company_id")
    wins_in_horizon = (accounts_idx["deals_per_year"] * accounts_idx["segment_win_rate"]).reindex(ids).fillna(0.0)
    p_any_win = 1.0 - np.exp(-wins_in_horizon.to_numpy() * horizon / YEAR_DAYS)
    value, at_risk = _customer_values(deals, ids, now, horizon, cfg.value_prior_deals)
    customers = pd.DataFrame({"company_id": ids.to_numpy(), "expansion_value": value, "revenue_at_risk": at_risk})
    for term, version, fallback in (("expansion", exp_version, p_any_win), ("churn", churn_version, 1 - p_any_win)):
        column = f"p_{term}"
        if version is not None and len(customer_rows):
            customers[column] = score_rows(version, customer_rows, "company_id").reindex(ids).to_numpy()
            sources[term] = {"source": "model", "model": version.name, "version": version.version}
        else:
            customers[column] = fallback
            sources[term] = {
                "source": "estimates",
                "rule": "Poisson P(a win within the horizon) from the shrunk "
                "deals per year x segment win rate" + ("" if term == "expansion" else ", complemented"),
            }
    table = potential_terms(open_deals, customers, accounts["company_id"])
    report = {
        "source": "models",
        "models_dir": str(cfg.models_dir),
        "alias": cfg.alias,
        "terms": sources,
        "account_horizon_days": horizon,
        "open_deals": len(open_deals),
        "customers": len(customers),
        "accounts_clipped_at_zero": int((table["potential_signed"] < 0).sum()),
        "totals": {
            c: float(table[c].sum()) for c in ("open_deals_value", "expansion_value", "churn_loss", "potential")
        },
    }
    return table, report


def apply_potential(
    inputs: OptimizeInputs, settings: dict | None, source: str | None = None, models_dir: str | None = None
) -> OptimizeInputs:
    """`inputs` with `potential` from the configured source (`--potential` / `--models-dir` override the config).

    With `models`, the statistical value is kept as `potential_estimate` (assignment scales its rep x account
    matrix by the ratio, `rescale_revenue`) and the terms are added as columns of the accounts table."""
    overrides = {k: v for k, v in (("source", source), ("models_dir", models_dir)) if v is not None}
    cfg = potential_config(dict(settings or {}) | overrides)
    if cfg.source == "estimates":
        return dataclasses.replace(inputs, potential={"source": "estimates", "terms": "estimates.account_estimates"})
    table, report = model_potential(inputs.tables, inputs.accounts, inputs.deals, cfg)
    accounts = inputs.accounts.rename(columns={"potential": "potential_estimate"})
    accounts = accounts.merge(table, on="company_id", how="left", validate="one_to_one")
    return dataclasses.replace(inputs, accounts=accounts, potential=report)


def rescale_revenue(revenue: np.ndarray, accounts: pd.DataFrame) -> np.ndarray:
    """[reps x accounts] revenue with each account's level replaced by the model potential: the skill model's
    rep effect enters as the ratio revenue[r, a] / statistical potential[a] (how much better or worse than the
    segment rep r sells there), applied to the model potential. An account with no statistical potential keeps
    ratio 1 (no rep signal)."""
    estimate = accounts["potential_estimate"].to_numpy(dtype=float)
    ratio = np.divide(revenue, estimate[None, :], out=np.ones_like(revenue), where=estimate[None, :] > 0)
    return ratio * accounts["potential"].to_numpy(dtype=float)[None, :]
