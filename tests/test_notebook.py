"""examples/lab.ipynb is executed so that it never rots (slow: `make test-slow`)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install nbclient nbformat ipykernel")
nbclient = pytest.importorskip("nbclient", reason="pip install nbclient nbformat ipykernel")

NOTEBOOK = Path(__file__).parents[1] / "examples" / "lab.ipynb"
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="apt-get install dataset-fashion-mnist")
def test_the_lab_notebook_runs_top_to_bottom(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )
    assert "Traceback" not in text
    assert "findings after the plan: none — healthy" in text
    assert (tmp_path / "curves.png").exists()
