"""examples/chapter8.ipynb, the book's chapter on the library, runs from top to bottom
(on the offline data, as a user opens it) and is kept in git without outputs."""

from __future__ import annotations

import json

import nbformat
import numpy as np
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
    "label_key": label_key,
    "n_cells": int(adata.n_obs),
    "n_preprocessed": int(pre.n_obs),
}))
"""


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "no code cells"
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def run_notebook(workdir, first_cell: str | None = None) -> dict:
    """Execute the notebook in ``workdir`` (its first cell replaced by ``first_cell``,
    when given) and return what :data:`REPORT`, appended to it, printed."""
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if first_cell is not None:
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert first.source.startswith("ZEISEL = False")
        first.source = first_cell
    notebook.cells.append(nbformat.v4.new_code_cell(REPORT))
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": workdir}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error
    stdout = "".join(
        output.get("text", "") for output in notebook.cells[-1].outputs if output.name == "stdout"
    )
    return json.loads(stdout)


@pytest.mark.installed
def test_the_notebook_runs_the_chapter_and_the_comparison(tmp_path):
    result = run_notebook(tmp_path)
    assert result["label_key"] == "bulk_labels"
    assert result["n_cells"] == result["n_preprocessed"] == 700  # pbmc68k, no cell dropped
    seeds = ["0", "1", "2"]
    methods = ["pca", "vae", "vae_improved"]
    assert sorted(map(tuple, result["runs"])) == sorted((m, s) for m in methods for s in seeds)
    assert all(0 < ari <= 1 for ari in result["ari"])  # real clusterings of 10 cell types
    assert set(result["book_ari"]) == {"PCA", "book's VAE"}
    assert result["baseline"] == ["pca"]
    assert result["best_epoch"] > 10  # trained, stopped early on the validation loss
    assert not list(tmp_path.iterdir())  # it writes nothing next to itself


FAKE_CELLS = 420


def fake_zeisel(path, n_cells=FAKE_CELLS, n_genes=1100, seed=0):
    """A Zeisel-format file big enough for the book's preprocessing (1000 genes, 200
    expressed genes per cell): 3 types, each with its own 60 raised genes."""
    from conftest import LEVEL1, zeisel_text

    rng = np.random.default_rng(seed)
    types = np.arange(n_cells) % len(LEVEL1)
    rates = np.full((n_genes, n_cells), 1.0)
    for t in range(len(LEVEL1)):
        rates[t * 60 : (t + 1) * 60, types == t] = 8.0
    counts = rng.poisson(rates)
    cell_ids = [f"1772071015_C{i:03d}" for i in range(n_cells)]
    level1 = [LEVEL1[t] for t in types]
    genes = [f"G{j}" for j in range(n_genes)]
    path.write_text(zeisel_text(counts, cell_ids, level1, level1, genes))


@pytest.mark.installed
def test_the_notebook_switches_to_the_books_data(tmp_path, monkeypatch):
    """ZEISEL = True reads the book's data through scembed.datasets.zeisel2015: here from
    its cache, filled beforehand from a local file in the book's format (no internet)."""
    import scembed

    source = tmp_path / "expression.txt"
    fake_zeisel(source)
    cache = tmp_path / "cache"
    scembed.datasets.zeisel2015(cache_dir=cache, urls=[source.as_uri()])
    monkeypatch.setenv("SCEMBED_CACHE_DIR", str(cache))  # the kernel inherits it
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_notebook(workdir, "ZEISEL = True\nSEEDS = [0]")
    # the fake's cells and labels, not pbmc68k's: the switch loaded Zeisel's file
    assert result["label_key"] == "level1class"
    # every cell expresses ~600 of the 1000 genes kept: none falls below min_genes 200
    assert result["n_cells"] == result["n_preprocessed"] == FAKE_CELLS
    runs = sorted(map(tuple, result["runs"]))
    assert runs == [("pca", "0"), ("vae", "0"), ("vae_improved", "0")]
    assert all(0 < ari <= 1 for ari in result["ari"])
