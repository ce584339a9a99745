"""Checks of the config and the plan it makes, before any job runs: the cells each dataset
needs, repeated seeds, the datasets and methods selected.

:func:`scembed.plan.load_plan` runs them when the workflow reads the config; the facts of
the data they rely on (the minimum of cells, the split's arithmetic) are in
:mod:`scembed.checks`.
"""

from __future__ import annotations

from scembed.checks import MIN_CELLS, split_sizes
from scembed.presets import VAEParams, vae_spec_params

PBMC68K_CELLS = 700  # scanpy's pbmc68k_reduced


def known_cell_count(dataset: dict) -> int | None:
    """The cells a dataset has before any filter, where the config alone fixes them
    (synthetic ``n_cells`` or ``type_sizes``, pbmc68k's 700); None for files."""
    if dataset["source"] == "synthetic":
        sizes = dataset.get("type_sizes")
        return int(sum(sizes)) if sizes else int(dataset["n_cells"])
    if dataset["source"] == "pbmc68k":
        return PBMC68K_CELLS
    return None


def vae_minibatch(method: dict | VAEParams) -> tuple[int, bool]:
    """(batch_size, drop_last) of a ``kind: vae`` method: its config entry, its preset
    filled in, or its VAEParams resolved already."""
    params = method if isinstance(method, VAEParams) else vae_spec_params(method)
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
    its config entry or its resolved VAEParams). ``where`` names the dataset in the
    messages (``datasets.NAME``). The filter ``min_genes`` can only remove cells, so a
    problem found here is certain.
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
    for name, method in (vae_methods or {}).items():
        batch_size, drop_last = vae_minibatch(method)
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


def _only_names(option: str, what: str, defined: dict, only) -> list[str]:
    """The names an ``only_*`` option lists (a list, or names separated by commas, as
    ``--config`` gives them); all of ``defined`` when it is empty. Raises ValueError
    naming an unknown name."""
    names = only.split(",") if isinstance(only, str) else list(only)
    names = [name.strip() for name in names if name.strip()]
    if not names:
        return list(defined)
    unknown = [name for name in names if name not in defined]
    if unknown:
        raise ValueError(
            f"{option} names {', '.join(map(repr, unknown))}, not a {what} of the "
            f"config. Choose from {', '.join(defined)} (or leave {option} empty to "
            f"run every {what})."
        )
    return names


def selected_methods(methods: dict, only, baseline: str) -> dict:
    """The methods to run (the config's ``only_methods``), in the config's order: all of
    them when ``only`` is empty. Raises ValueError naming an unknown method, or a
    ``baseline`` method left out (every comparison is made with it)."""
    names = _only_names("only_methods", "method", methods, only)
    if baseline in methods and baseline not in names:
        raise ValueError(
            f"only_methods leaves out {baseline!r}, the baseline every method is compared "
            f"with. Add {baseline} to only_methods, or set `baseline` to one of "
            f"{', '.join(names)} (or to none)."
        )
    return {name: spec for name, spec in methods.items() if name in names}


def selected_datasets(datasets: dict, only) -> list[str]:
    """The datasets to run, in the config's order: all of them when ``only`` (the config's
    ``only_datasets``: a list of names, or names separated by commas) is empty.

    Raises ValueError naming an unknown name, or a selected variant whose ``variant_of``
    dataset is left out (its comparison needs that dataset's runs).
    """
    names = _only_names("only_datasets", "dataset", datasets, only)
    if set(names) == set(datasets):  # every dataset (`variant_of` is checked later)
        return list(datasets)
    for name in names:
        parent = datasets[name].get("variant_of")
        if parent is not None and parent not in names:
            raise ValueError(
                f"only_datasets has the variant {name!r} without {parent!r}, the dataset "
                f"it is compared with (variant_of). Add {parent} to only_datasets."
            )
    return [name for name in datasets if name in names]
