"""The notebooks run top to bottom on small data (what a researcher sees is what works)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


# The quickstart runs in `make test`; the serving notebook repeats what tests/integration/test_triton_serving.py
# checks and is extended (it starts its own Triton).
EXTENDED = {"02_serving"}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.extended) if p.stem in EXTENDED else p for p in NOTEBOOKS],
    ids=[p.stem for p in NOTEBOOKS],
)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("FULQRUN_ROOT", str(tmp_path))
    monkeypatch.setenv("FULQRUN_NOTEBOOK_SMALL", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert errors == []


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"01_quickstart", "02_serving"}
