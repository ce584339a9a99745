"""The Zeisel 2015 text file (scembed.sources.zeisel): its layout, and every way it can be
cut short or damaged."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import N_CELLS, N_GENES, write_zeisel, zeisel_example, zeisel_text

from scembed.checks import DataError
from scembed.sources import ZEISEL_FIELDS, load_dataset, read_zeisel, zeisel_layout_ok

# --------------------------------------------------------------------------- helpers


def cut_in_gene_rows(text: str) -> str:
    """The file cut in the middle of a gene row, a few counts into it."""
    start = text.index("\nGene20\t") + 1
    return text[: start + len("Gene20\t3\t1\t2")]


# --------------------------------------------------------------------------- the layout


def test_read_zeisel_transposes_counts_and_keeps_metadata(tmp_path):
    data = write_zeisel(tmp_path / "expression.txt")
    adata = read_zeisel(data["path"])
    assert adata.shape == (N_CELLS, N_GENES)
    np.testing.assert_array_equal(np.asarray(adata.X), data["counts"])
    assert list(adata.obs_names) == data["cell_ids"]
    assert list(adata.var_names) == data["genes"]
    assert list(adata.obs["level1class"]) == data["level1"]
    assert list(adata.obs["level2class"]) == data["level2"]
    # every metadata field but cell_id (the obs names) is a column
    assert list(adata.obs.columns) == [f for f in ZEISEL_FIELDS if f != "cell_id"]
    assert list(adata.obs["age"].unique()) == ["21"]


# --------------------------------------------------------------------------- damaged files


def test_zeisel_wrong_field_names(tmp_path):
    counts, cell_ids, level1, level2, genes = zeisel_example()
    fields = list(ZEISEL_FIELDS)
    fields[8] = "class"
    path = tmp_path / "expression.txt"
    path.write_text(zeisel_text(counts, cell_ids, level1, level2, genes, fields=fields))
    with pytest.raises(DataError, match="not the Zeisel 2015 expression file") as err:
        read_zeisel(path)
    assert "'class'" in str(err.value) and "'level1class'" in str(err.value)


def test_zeisel_gene_row_cut_short(tmp_path):
    path = tmp_path / "expression.txt"
    path.write_text(cut_in_gene_rows(zeisel_text(*zeisel_example())))
    with pytest.raises(DataError, match="truncated") as err:
        read_zeisel(path)
    assert "Gene20" in str(err.value)
    with pytest.raises(DataError, match="truncated"):
        zeisel_layout_ok(path)


def test_zeisel_gene_rows_missing(tmp_path):
    text = zeisel_text(*zeisel_example())
    path = tmp_path / "expression.txt"
    path.write_text(text[: text.index("\nGene0\t") + 1])  # metadata and separator only
    with pytest.raises(DataError, match="no gene rows.*truncated"):
        read_zeisel(path)


def test_zeisel_cut_in_metadata(tmp_path):
    text = zeisel_text(*zeisel_example())
    path = tmp_path / "expression.txt"
    path.write_text(text[: text.index("\tcell_id\t")])
    with pytest.raises(DataError, match="not the Zeisel 2015 expression file"):
        read_zeisel(path)


def test_zeisel_non_numeric_count(tmp_path):
    counts, *rest = zeisel_example()
    text = zeisel_text(counts, *rest)
    row = "\t".join(["Gene5", "6", *(str(int(c)) for c in counts[5])])
    assert row in text
    path = tmp_path / "expression.txt"
    bad = "\t".join(["Gene5", "6", "1", "n/a", *(str(int(c)) for c in counts[5, 2:])])
    path.write_text(text.replace(row, bad))
    with pytest.raises(DataError, match="not numbers") as err:
        read_zeisel(path)
    assert "'n/a' in gene row 'Gene5' (line 17) for cell '1772071015_C01'" in str(err.value)


def test_zeisel_gene_symbols_that_look_like_missing_values(tmp_path):
    counts, cell_ids, level1, level2, genes = zeisel_example()
    genes[3], genes[4] = "NA", "nan"
    path = tmp_path / "expression.txt"
    path.write_text(zeisel_text(counts, cell_ids, level1, level2, genes))
    adata = read_zeisel(path)
    assert list(adata.var_names) == genes
    np.testing.assert_array_equal(np.asarray(adata.X), counts.T)


def test_zeisel_fractional_count_rejected_on_import(tmp_path):
    counts, *rest = zeisel_example()
    text = zeisel_text(counts, *rest)
    row = "\t".join(["Gene7", "1", *(str(int(c)) for c in counts[7])])
    bad = "\t".join(["Gene7", "1", "2.5", *(str(int(c)) for c in counts[7, 1:])])
    path = tmp_path / "expression.txt"
    path.write_text(text.replace(row, bad))
    with pytest.raises(DataError, match="not an integer") as err:
        load_dataset({"source": "zeisel2015", "label_key": "level1class"}, {"path": str(path)})
    assert "2.5" in str(err.value) and "cell 0, gene 7" in str(err.value)
    assert str(path) in str(err.value)
