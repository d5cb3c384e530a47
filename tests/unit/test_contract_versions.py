"""Contract versions: released fingerprints, compatible vs breaking changes, renamed columns through aliases,
and warm starts refused across a breaking change."""

from __future__ import annotations

import copy
import json
import shutil

import pandas as pd
import pytest

from fulqrun_ml.data.contract_versions import (
    CONTRACT_VERSION,
    apply_aliases,
    breaking_changes,
    check_compatible,
    contract_fingerprint,
    released,
)
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.data.validation import validate_crm
from fulqrun_ml.errors import DataContractError


def test_the_running_contract_is_released():
    """A schema change without a new contracts/v<N>.json (and CONTRACT_VERSION bump) fails here."""
    assert released(CONTRACT_VERSION) == json.loads(json.dumps(contract_fingerprint()))


def test_every_release_reads_its_predecessor():
    for version in range(2, CONTRACT_VERSION + 1):
        assert breaking_changes(released(version - 1), released(version)) == []


def _column(fp: dict, table: str, column: str) -> dict:
    return fp["tables"][table][column]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda fp: fp["tables"]["opportunities"].pop("value"), "opportunities.value was removed"),
        (lambda fp: fp["tables"].pop("leads"), "table 'leads' was removed"),
        (lambda fp: _column(fp, "companies", "annual_revenue").update(kind="integer"), "not a widening"),
        (lambda fp: _column(fp, "users", "role").update(allowed=["rep", "admin"]), "no longer allows ['manager']"),
        (
            lambda fp: fp["tables"]["opportunities"].update(
                legacy_score={"kind": "number", "nullable": False, "allowed": None, "default": False}
            ),
            "opportunities.legacy_score is new and required",
        ),
        (lambda fp: _column(fp, "opportunities", "stage").update(nullable=True), "became nullable without a default"),
        (lambda fp: _column(fp, "companies", "country").update(allowed=["US"]), "became a closed set"),
    ],
)
def test_breaking_changes_are_named(change, expected):
    new = copy.deepcopy(contract_fingerprint())
    change(new)
    problems = breaking_changes(contract_fingerprint(), new)
    assert any(expected in p for p in problems), problems
    with pytest.raises(DataContractError, match="breaking change"):
        check_compatible(contract_fingerprint(), "init_from=deal_win@1", new)


def test_compatible_changes_pass():
    new = copy.deepcopy(contract_fingerprint())
    _column(new, "companies", "employee_count").update(kind="number")  # widened
    _column(new, "users", "role").update(allowed=["rep", "manager", "admin", "partner"])  # set grows
    new["tables"]["activities"]["sentiment"] = {"kind": "number", "nullable": True, "allowed": None, "default": False}
    old_value = new["tables"]["opportunities"].pop("value")  # renamed, with an alias for the old name
    new["tables"]["opportunities"]["amount_usd"] = old_value
    new["aliases"]["opportunities"] = {"amount_usd": ["value"]}
    assert breaking_changes(contract_fingerprint(), new) == []
    check_compatible(None, "a version published before fingerprints")  # nothing to compare: passes


def test_aliases_rename_and_refuse_ambiguity():
    frame = pd.DataFrame({"id": ["a"], "amount": [10.0]})
    assert list(apply_aliases("opportunities", frame).columns) == ["id", "value"]
    with pytest.raises(DataContractError, match="'value'"):
        apply_aliases("opportunities", frame.assign(value=[11.0]))


def test_an_export_with_renamed_columns_loads_under_their_canonical_names(tmp_path):
    tables = simulate_crm(n_opportunities=60, n_companies=15, n_reps=4, seed=5).tables
    directory = write_crm_directory(tables, tmp_path / "crm")
    opportunities = pd.read_parquet(directory / "opportunities.parquet").rename(columns={"value": "amount"})
    opportunities.to_parquet(directory / "opportunities.parquet")
    companies = pd.read_parquet(directory / "companies.parquet").rename(columns={"size": "company_size"})
    companies.to_parquet(directory / "companies.parquet")
    loaded = DirectorySource(directory)()
    loaded = getattr(loaded, "tables", loaded)
    assert loaded.opportunities["value"].tolist() == pytest.approx(tables.opportunities["value"].tolist())
    assert loaded.companies["size"].tolist() == tables.companies["size"].tolist()
    assert "amount" not in loaded.opportunities.columns


def test_validation_applies_aliases_before_checking():
    tables = simulate_crm(n_opportunities=40, n_companies=10, n_reps=3, seed=6).tables
    renamed = tables.opportunities.rename(columns={"assigned_to": "owner_id"})
    result = validate_crm(type(tables)(**{**tables.__dict__, "opportunities": renamed}))
    validated = getattr(result, "tables", result)
    assert "assigned_to" in validated.opportunities.columns


def test_warm_start_refuses_a_parent_from_an_incompatible_contract(published, tmp_path, compose_train):
    """A model trained under contract v1 warm-starts on today's (v2) data; one whose contract had a column
    that is now gone is refused, naming the column."""
    from fulqrun_ml.training.train import train

    version, _ = published
    models_dir = tmp_path / "models"
    shutil.copytree(version.path.parent.parent, models_dir)
    meta_path = models_dir / version.name / str(version.version) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    fast = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=none"]
    meta["contract"] = released(1)
    meta_path.write_text(json.dumps(meta))
    child = train(compose_train(tmp_path / "v1", *fast, f"paths.models_dir={models_dir}", "init_from=deal_win@1"))
    assert child["parent"]["version"] == 1
    broken = copy.deepcopy(released(1))
    broken["tables"]["opportunities"]["legacy_score"] = {"kind": "number", "nullable": False, "allowed": None,
                                                         "default": False}  # fmt: skip
    meta["contract"] = broken
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataContractError, match=r"opportunities\.legacy_score was removed"):
        train(compose_train(tmp_path / "broken", *fast, f"paths.models_dir={models_dir}", "init_from=deal_win@1"))
