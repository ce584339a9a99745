"""examples/chapter8.ipynb, the book's chapter on the library, runs from top to bottom
(on the offline data, as a user opens it) and is kept in git without outputs."""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import REPO

NOTEBOOK = REPO / "examples" / "chapter8.ipynb"
# appended for the test only: what the notebook computed, as JSON on stdout
REPORT = """
import json
print(json.dumps({
    "runs": table[["method", "seed"]].astype(str).values.tolist(),
    "ari": table["ari"].tolist(),
    "book_ari": book_ari,
    "baseline": sorted(comparison["baseline"].dropna().unique().tolist()),
    "best_epoch": int(book.best_epoch),
}))
"""


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "no code cells"
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.installed
def test_the_notebook_runs_the_chapter_and_the_comparison(tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(REPORT))
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error
    stdout = "".join(
        output.get("text", "") for output in notebook.cells[-1].outputs if output.name == "stdout"
    )
    result = json.loads(stdout)
    seeds = ["0", "1", "2"]
    methods = ["pca", "vae", "vae_improved"]
    assert sorted(map(tuple, result["runs"])) == sorted((m, s) for m in methods for s in seeds)
    assert all(0 < ari <= 1 for ari in result["ari"])  # real clusterings of 10 cell types
    assert set(result["book_ari"]) == {"PCA", "book's VAE"}
    assert result["baseline"] == ["pca"]
    assert result["best_epoch"] > 10  # trained, stopped early on the validation loss
    assert not list(tmp_path.iterdir())  # it writes nothing next to itself
