"""`runs compare` reads what training, W&B (offline) and the registry recorded."""

from pathlib import Path

from fulqrun_ml.registry.aliases import promote
from fulqrun_ml.training.compare import collect_runs, compare_main
from tests.registry_copy import copy_version


def test_compare_lists_runs_with_metrics_tags_and_registry_versions(trained_run, published, tmp_path):
    version = copy_version(published[0], tmp_path / "models")  # promoting must not touch the shared registry
    models_dir = version.path.parent.parent
    promote(models_dir, version.name, version.version, alias="candidate", actor="test")
    log_dir = Path(trained_run["run_dir"]).parent
    runs = collect_runs(log_dir, models_dir)
    row = runs[runs["run"] == Path(trained_run["run_dir"]).name].iloc[0]
    assert row["auc"] == trained_run["metrics"]["model"]["auc"]
    assert row["oracle_auc"] == trained_run["metrics"]["oracle"]["auc"]
    assert row["model"] == "mlp" and row["lr"] == trained_run["config"]["task"]["module"]["optimizer"]["lr"]
    assert row["wandb"] == trained_run["wandb_run_id"] and "mlp" in row["tags"].split(",")
    assert f"deal_win v{version.version} [candidate]" in row["version"].split("; ")
    assert collect_runs(log_dir, models_dir, tag="no-such-tag").empty
    assert collect_runs(log_dir, models_dir, task="deal_win").shape[0] == runs.shape[0]

    out = tmp_path / "compare"
    code = compare_main(["compare", "--log-dir", str(log_dir), "--models-dir", str(models_dir), "--out", str(out)])
    assert code == 0
    assert out.with_suffix(".png").stat().st_size > 0 and "auc" in out.with_suffix(".csv").read_text()
