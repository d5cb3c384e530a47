"""`fulqrun-ml train -m hparams_search=...`: an Optuna study over model families, pruning, a registered winner."""

import json

import pytest

from fulqrun_ml.cli import main
from fulqrun_ml.registry.alias_state import resolve_alias

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sweep_runs_trials_and_registers_the_best_as_candidate(tmp_path, monkeypatch):
    monkeypatch.setenv("FULQRUN_ROOT", str(tmp_path))
    code = main(
        [
            "train",
            "-m",
            "hparams_search=deal_win_optuna",
            "hparams_search.n_trials=3",
            "hparams_search.n_startup_trials=1",
            "hparams_search.params.model.choices=[mlp,tabm]",
            "data.source.n_opportunities=1000",
            "data.source.n_companies=200",
            "trainer.max_epochs=3",
            "logger=none",
            "trainer.enable_progress_bar=false",
        ]
    )
    assert code == 0
    (sweep_dir,) = (tmp_path / "logs" / "deal_win" / "sweeps").iterdir()
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(summary["trials"]) == 3 and summary["n_complete"] >= 1
    values = [t["value"] for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert summary["best_value"] == max(values) and 0.5 < summary["best_value"] <= 1.0
    assert all(t["params"]["model"] in ("mlp", "tabm") for t in summary["trials"])
    assert (sweep_dir / "sweep.png").stat().st_size > 0 and "| trial |" in (sweep_dir / "sweep.md").read_text()
    registered = summary["registered"]
    assert resolve_alias(tmp_path / "models", "deal_win", "candidate") == registered["version"]
    lineage = json.loads((tmp_path / "models" / "deal_win" / str(registered["version"]) / "lineage.json").read_text())
    best_overrides = set(summary["best_overrides"])
    assert {f"model={lineage['model']}"} <= best_overrides
