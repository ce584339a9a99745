"""Checks of counts and labels shared by the sources, preprocessing and the VAE.

:class:`DataError` is input data that cannot be used as it is; every message names the
problem and the fix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the problem and the fix."""


RAW_COUNTS_FIX = (
    "Point the dataset at raw UMI counts (for an h5ad file, set `counts_layer` to the layer "
    "that holds them)."
)
_CHECK_ROWS = 4096  # rows per chunk when checking dense counts (bounded extra memory)


def check_counts(X, where: str, fix: str = RAW_COUNTS_FIX) -> None:
    """Fail unless ``X`` holds finite, non-negative integers; name the first bad value.

    "First" is in cell (row-major) order, whatever the matrix layout; ``fix`` ends the
    message with what the user should do.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X)  # X.data of CSC/COO is not in cell order
        bad = np.flatnonzero(_bad_counts(X.data))
        if not bad.size:
            return
        k = int(bad[0])
        row, col = int(np.searchsorted(X.indptr, k, side="right") - 1), int(X.indices[k])
        value = X.data[k].item()
    else:
        X = np.asarray(X)
        for start in range(0, X.shape[0], _CHECK_ROWS):
            bad = np.argwhere(_bad_counts(X[start : start + _CHECK_ROWS]))
            if bad.size:
                row, col = start + int(bad[0][0]), int(bad[0][1])
                value = X[row, col].item()
                break
        else:
            return
    if not np.isfinite(value):
        problem = "is not finite"
    elif value < 0:
        problem = "is negative"
    else:
        problem = "is not an integer"
    raise DataError(
        f"{where}: the counts must be non-negative integers, but the value {value!r} at "
        f"cell {row}, gene {col} {problem}. {fix}"
    )


def _bad_counts(values: np.ndarray) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
        return values < 0
    if not np.issubdtype(values.dtype, np.floating):
        raise DataError(f"the counts must be numbers, not {values.dtype}.")
    return ~np.isfinite(values) | (values < 0) | (values != np.round(values))


def check_labels(obs: pd.DataFrame, label_key: str, where: str) -> None:
    """Fail unless ``obs`` has the label column (listing the columns that exist) with at
    least two distinct labels."""
    if label_key not in obs.columns:
        raise DataError(
            f"{where}: there is no label column {label_key!r}; the columns are "
            f"{list(map(str, obs.columns))}. Set `label_key` to one of them."
        )
    if not labelled(obs[label_key]).any():
        raise DataError(
            f"{where}: the label column {label_key!r} has no labels (every value is missing "
            "or empty). Set `label_key` to a column that holds the cell types."
        )
    values = obs[label_key][labelled(obs[label_key])].astype(str).unique()
    if len(values) < 2:
        raise DataError(
            f"{where}: the label column {label_key!r} holds a single value ({values[0]!r}): "
            "ARI, NMI and every other score against one label mean nothing. Set "
            "`label_key` to a column with at least two cell types."
        )


def labelled(labels: pd.Series) -> np.ndarray:
    """True for the cells that have a label: not missing (NaN/None) and not blank."""
    blank = labels.astype(str).str.strip() == ""
    return (labels.notna() & ~blank).to_numpy()


def normalise_labels(labels: pd.Series) -> pd.Categorical:
    """Labels as strings in a categorical; a missing or blank label stays missing (NaN),
    so that an unlabelled cell is never scored as a cell type named "nan"."""
    return pd.Categorical(labels.astype(str).where(labelled(labels)).to_numpy())


# --------------------------------------------------------------------------- cell counts

MIN_CELLS = 10  # preprocess refuses to go on with fewer kept cells
PBMC68K_CELLS = 700  # scanpy's pbmc68k_reduced
MAX_PRESET_BATCH_SIZE = 128  # the largest batch_size of the VAE presets (tested)


def split_sizes(n_cells: int, validation_fraction: float, test_fraction: float) -> dict:
    """Cells of each split for ``n_cells`` cells (the arithmetic of ``split_cells``)."""
    n_validation = int(round(validation_fraction * n_cells))
    n_test = int(round(test_fraction * n_cells))
    return {
        "train": n_cells - n_validation - n_test,
        "validation": n_validation,
        "test": n_test,
    }


def known_cell_count(dataset: dict) -> int | None:
    """The cells a dataset has before any filter, where the config alone fixes them
    (synthetic ``n_cells`` or ``type_sizes``, pbmc68k's 700); None for files."""
    if dataset["source"] == "synthetic":
        sizes = dataset.get("type_sizes")
        return int(sum(sizes)) if sizes else int(dataset["n_cells"])
    if dataset["source"] == "pbmc68k":
        return PBMC68K_CELLS
    return None


def vae_minibatch(spec: dict) -> tuple[int, bool]:
    """(batch_size, drop_last) of a ``kind: vae`` method, its preset filled in."""
    from scembed.vae.params import resolve_params  # imports torch: only when needed

    params = resolve_params({k: v for k, v in spec.items() if k != "kind"})
    return params.batch_size, params.drop_last


def too_few_cells(
    n_cells: int,
    where: str,
    *,
    n_neighbors: int,
    validation_fraction: float,
    test_fraction: float,
    vae_methods: dict | None = None,
) -> list[str]:
    """Why ``n_cells`` cells cannot go through the workflow (empty list when they can).

    Checks the cells against the preprocessing's minimum, the train/validation split,
    ``cluster.n_neighbors`` and each VAE method's minibatch (``vae_methods``: name to
    config spec). ``where`` names the dataset in the messages (``datasets.NAME``). The
    filter ``min_genes`` can only remove cells, so a problem found here is certain.
    """
    problems = []
    fix_cells = f"or give {where} more cells"
    if n_cells < MIN_CELLS:
        problems.append(
            f"{where}: {n_cells} cells, but the workflow needs at least {MIN_CELLS}; "
            "give the dataset more cells."
        )
    if n_neighbors >= n_cells:
        problems.append(
            f"{where}: {n_cells} cells, but cluster.n_neighbors is {n_neighbors}: the kNN "
            "graph needs more cells than neighbours. Set `cluster: {n_neighbors: "
            f"{min(n_cells - 1, max(2, n_cells // 2))}}}` under {where} {fix_cells}."
        )
    split = split_sizes(n_cells, validation_fraction, test_fraction)
    if split["train"] < 2 or split["validation"] < 1:
        problems.append(
            f"{where}: {n_cells} cells give {split['train']} training and "
            f"{split['validation']} validation cells (validation_fraction "
            f"{validation_fraction}, test_fraction {test_fraction}); training needs at "
            "least 2 and 1. Raise `validation_fraction` under the dataset's `preprocess` "
            f"{fix_cells}."
        )
        return problems
    for name, spec in (vae_methods or {}).items():
        largest = spec.get("batch_size", MAX_PRESET_BATCH_SIZE)
        if split["train"] >= largest:
            continue  # a full minibatch whatever the preset: torch need not be imported
        batch_size, drop_last = vae_minibatch(spec)
        if split["train"] < (batch_size if drop_last else 2):
            problems.append(
                f"{where}: {n_cells} cells give {split['train']} training cells, fewer than "
                f"one minibatch of method {name} (batch_size {batch_size}, drop_last "
                f"true). Set `batch_size: {split['train']}` (or less) under methods.{name} "
                f"{fix_cells}."
            )
    return problems


def repeated_seeds(seeds) -> str | None:
    """The message for a seed list that repeats a seed (None when each seed is there once)."""
    if not isinstance(seeds, list):
        return None
    written = [repr(seed) for seed in seeds]
    repeated = [seed for seed in dict.fromkeys(written) if written.count(seed) > 1]
    if not repeated:
        return None
    return (
        f"seeds {seeds} lists {', '.join(repeated)} more than once: each seed is one "
        "run, and a seed twice would be the same run twice. List each seed once, e.g. "
        f"`seeds: [{', '.join(dict.fromkeys(written))}]`."
    )


def selected_datasets(datasets: dict, only) -> list[str]:
    """The datasets to run, in the config's order: all of them when ``only`` (the config's
    ``only_datasets``: a list of names, or names separated by commas) is empty.

    Raises ValueError naming an unknown name, or a selected variant whose ``variant_of``
    dataset is left out (its comparison needs that dataset's runs).
    """
    names = only.split(",") if isinstance(only, str) else list(only)
    names = [name.strip() for name in names if name.strip()]
    if not names:
        return list(datasets)
    unknown = [name for name in names if name not in datasets]
    if unknown:
        raise ValueError(
            f"only_datasets names {', '.join(map(repr, unknown))}, not a dataset of the "
            f"config. Choose from {', '.join(datasets)} (or leave only_datasets empty to "
            "run every dataset)."
        )
    for name in names:
        parent = datasets[name].get("variant_of")
        if parent is not None and parent not in names:
            raise ValueError(
                f"only_datasets has the variant {name!r} without {parent!r}, the dataset "
                f"it is compared with (variant_of). Add {parent} to only_datasets."
            )
    return [name for name in datasets if name in names]
