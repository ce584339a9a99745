"""The Zeisel 2015 expression file: its text layout, read into cells x genes."""

from __future__ import annotations

import os

import anndata as ad
import numpy as np
import pandas as pd

from scembed.checks import DataError, check_counts

ZEISEL_FIELDS = (
    "tissue",
    "group #",
    "total mRNA mol",
    "well",
    "sex",
    "age",
    "diameter",
    "cell_id",
    "level1class",
    "level2class",
)


def read_zeisel(path: str | os.PathLike) -> ad.AnnData:
    """Parse the Zeisel 2015 expression file (genes x cells text) into cells x genes.

    Layout (BOOK.md): rows 0-9 per-cell metadata (column 1 the field name), row 10 a
    separator, then one row per gene: symbol, gene-cluster number (dropped), counts.
    """
    path = str(path)
    with open(path, encoding="utf-8", newline="") as handle:
        head = [handle.readline().rstrip("\r\n").split("\t") for _ in range(11)]
    fields = tuple(row[1] if len(row) > 1 else "" for row in head[:10])
    if fields != ZEISEL_FIELDS:
        raise DataError(
            f"{path}: not the Zeisel 2015 expression file: rows 0-9 should name the fields "
            f"{list(ZEISEL_FIELDS)} in column 1, found {list(fields)}. Download it again "
            "or check the dataset's `path`."
        )
    n_cells = len(head[0]) - 2
    if n_cells < 1 or any(len(row) - 2 != n_cells for row in head[:10]):
        raise DataError(f"{path}: the metadata rows do not all have the same number of cells.")
    if any(value.strip() for value in head[10]):
        raise DataError(f"{path}: row 10 should be an empty separator row.")
    metadata = zip(ZEISEL_FIELDS, head[:10], strict=True)
    obs = pd.DataFrame({field: row[2:] for field, row in metadata})
    try:
        genes = pd.read_csv(
            path,
            sep="\t",
            header=None,
            skiprows=11,
            index_col=0,
            quoting=3,
            dtype={0: str},
            keep_default_na=False,  # "NA", "nan", "null"... are not counts (nor missing)
            na_values=[""],
            engine="c",
        )
    except pd.errors.EmptyDataError as err:
        raise DataError(
            f"{path}: no gene rows after the separator row 10: the file is truncated. "
            "Download it again or check the dataset's `path`."
        ) from err
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: the gene rows do not parse as counts ({err}).") from err
    if genes.shape[0] == 0 or genes.shape[1] != n_cells + 1:
        raise DataError(
            f"{path}: expected gene rows with {n_cells + 2} fields (symbol, cluster, "
            f"{n_cells} counts); found {genes.shape[0]} rows of {genes.shape[1] + 1} fields. "
            "The file is truncated or not the Zeisel file."
        )
    counts = genes.iloc[:, 1:]
    if not all(np.issubdtype(t, np.number) for t in counts.dtypes):
        numeric = counts.apply(pd.to_numeric, errors="coerce")
        gene, cell = np.argwhere((numeric.isna() & counts.notna()).to_numpy())[0]
        raise DataError(
            f"{path}: some gene rows hold values that are not numbers, first "
            f"{counts.iat[gene, cell]!r} in gene row {genes.index[gene]!r} (line "
            f"{12 + gene}) for cell {obs['cell_id'].iat[cell]!r}."
        )
    missing = counts.isna().any(axis=1).to_numpy()
    if missing.any():  # a row cut short (truncated file) or an empty count field
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{path}: gene row {genes.index[i]!r} (line {12 + i}) lacks some of its "
            f"{n_cells} counts: the file is truncated or damaged. Download it again or "
            "check the dataset's `path`."
        )
    obs.index = pd.Index(obs.pop("cell_id").to_numpy(), name="cell_id")
    var = pd.DataFrame(index=pd.Index(genes.index.astype(str), name="gene"))
    values = counts.to_numpy(dtype=np.float64).T
    return ad.AnnData(X=values, obs=obs, var=var)


def zeisel_layout_ok(path: str | os.PathLike) -> None:
    """Raise :class:`DataError` unless ``path`` parses as the Zeisel file with valid counts."""
    adata = read_zeisel(path)
    check_counts(adata.X, str(path))
