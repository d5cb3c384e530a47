"""Writes notebooks/*.ipynb from the cells below, so the notebooks stay reviewable as plain Python.

Run `python scripts/make_notebooks.py` after editing; `tests/e2e/test_notebooks.py` executes the result.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = '''import os
from pathlib import Path

# Small data unless FULQRUN_NOTEBOOK_SMALL=0, so the notebook runs in about a minute on a laptop.
SMALL = os.environ.get("FULQRUN_NOTEBOOK_SMALL", "1") == "1"
ROOT = Path(os.environ.get("FULQRUN_ROOT", Path.cwd().parent)).resolve()
os.environ["FULQRUN_ROOT"] = str(ROOT)  # where logs/, models/ and reports/ go
DATA = ["data.source.n_opportunities=1500", "data.source.n_companies=300"] if SMALL else []

from hydra import compose, initialize_config_dir

from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.train import train


def train_run(name, *overrides):
    """Compose the real `configs/train.yaml` with overrides, exactly as `fulqrun-ml train` would."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*DATA, "trainer.max_epochs=6", "trainer.enable_progress_bar=false",
                                          f"paths.output_dir={ROOT}/logs/deal_win/runs/notebook_{name}", *overrides])
    return train(cfg)'''

QUICKSTART = [
    new_markdown_cell(
        "# Quickstart: train two models, compare runs\n\n"
        "Synthetic CRM -> point-in-time deal snapshots -> two backbones (MLP, TabM) -> W&B offline runs -> "
        "one comparison table. Every number is on the latest time period (the holdout)."
    ),
    new_code_cell(SETUP),
    new_code_cell('mlp = train_run("mlp", "model=mlp")\ntabm = train_run("tabm", "model=tabm")'),
    new_markdown_cell("Each run left a directory with metrics, the fitted FeatureSpec and an offline W&B run:"),
    new_code_cell(
        "import pandas as pd\n\n"
        'pd.DataFrame({r["model"]: r["metrics"]["model"] for r in (mlp, tabm)} | {"rep": mlp["metrics"]["rep"], '
        '"oracle": mlp["metrics"]["oracle"]}).loc[["auc", "log_loss", "brier", "ece"]].round(4)'
    ),
    new_markdown_cell("`fulqrun-ml runs compare` reads run directories, their W&B files and the registry:"),
    new_code_cell(
        "from fulqrun_ml.training.compare import collect_runs\n\n"
        'runs = collect_runs(ROOT / "logs", ROOT / "models", task="deal_win")\n'
        'runs = runs[runs["run"].str.contains("notebook_")]\n'
        'assert set(runs["model"]) >= {"mlp", "tabm"}\n'
        'runs[["run", "model", "lr", "auc", "ece", "rep_auc", "oracle_auc", "wandb", "tags"]]'
    ),
]

SERVING = [
    new_markdown_cell(
        "# Serving: publish a version, call Triton, roll back\n\n"
        "A real `tritonserver` (CPU: Python backend + onnxruntime) on free loopback ports, explicit model "
        "control so versions change without dropping requests."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "from fulqrun_ml.export.package import export_run\n"
        "from fulqrun_ml.registry.aliases import promote, rollback\n\n"
        'run = train_run("serving", "logger=none")\n'
        'models_dir = ROOT / "models"\n'
        'v1, parity = export_run(Path(run["run_dir"]), models_dir, "deal_win")\n'
        'v2, _ = export_run(Path(run["run_dir"]), models_dir, "deal_win")  # a second version to roll back from\n'
        'promote(models_dir, "deal_win", v1.version, actor="notebook")\n'
        'promote(models_dir, "deal_win", v2.version, actor="notebook")\n'
        'print(f"published v{v1.version} and v{v2.version}; parity {parity:.1e}")'
    ),
    new_code_cell(
        "import pandas as pd\n\n"
        "from fulqrun_ml.serving.client import TritonPredictionClient\n"
        "from fulqrun_ml.serving.control import ModelController\n"
        "from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version\n"
        "from fulqrun_ml.serving.server import TritonServer\n\n"
        'builder = TritonRepositoryBuilder(ROOT / "models" / "notebook_repo")\n'
        "builder.add(v2, config_for_version(v2))\n"
        "builder.add(v2, config_for_version(v2, reasons_top_k=3))\n"
        'server = TritonServer(builder.repository, explicit_models=["deal_win", "deal_win_reasons"]).start()\n'
        'deals = pd.read_parquet(Path(run["run_dir"]) / "open_deals.parquet")\n'
        'names = [i["name"] for i in v2.metadata["inputs"]]\n'
        'client = TritonPredictionClient(server.http_url, "deal_win")\n'
        "client.predict_detailed(deals[names].head(3))"
    ),
    new_markdown_cell("Reasons come from the `deal_win_reasons` endpoint (feature ablation against a typical deal):"),
    new_code_cell(
        'with TritonPredictionClient(server.http_url, "deal_win_reasons") as explainer:\n'
        "    explained = explainer.predict_detailed(deals[names].head(1))[0]\n"
        "explained.reasons"
    ),
    new_markdown_cell("Roll back production in the registry, then swap the live server to that version:"),
    new_code_cell(
        'change = rollback(models_dir, "deal_win", actor="notebook")\n'
        "controller = ModelController(server.http_url, builder)\n"
        "controller.deploy(v1, config_for_version(v1))\n"
        "after = client.predict_detailed(deals[names].head(1))[0]\n"
        "assert change.to_version == v1.version and after.model_version == str(v1.version)\n"
        'print(f"production v{change.from_version} -> v{change.to_version}; served by v{after.model_version}")'
    ),
    new_code_cell("client.close()\ncontroller.close()\nserver.stop()"),
]


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in (("01_quickstart", QUICKSTART), ("02_serving", SERVING)):
        notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
        nbformat.write(notebook, out / f"{name}.ipynb")


if __name__ == "__main__":
    main()
