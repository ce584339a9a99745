"""Read cells x genes integer counts and cell-type labels from each supported source.

Every reader returns an AnnData with sparse CSR integer counts in ``X``, the labels in
``obs[label_key]`` and ``uns["label_key"]``; :func:`check_counts` guards every import.
With a ``batch_key`` of two or more batches, ``obs[batch_key]`` holds the batches (as
strings) and ``uns["batch_key"]`` names it (:func:`~scembed.sources.finishing.finish`).

One job a module: :mod:`.zeisel` (the Zeisel 2015 text file), :mod:`.readers` (pbmc68k,
h5ad, 10x), :mod:`.fetch` (the download from mirrors) with :mod:`.faults` (what went wrong
in it, and the fix), and :mod:`.finishing` (the checks, layout and provenance every import
ends with). :data:`SOURCES` maps a config's ``source`` to its loader; a new source is a
reader and one entry there (and in the config schema's ``source`` enum).
"""

from __future__ import annotations

from collections.abc import Callable

import anndata as ad

from scembed.checks import DataError
from scembed.sources.fetch import DownloadFault, download
from scembed.sources.finishing import (
    drop_empty_cells,
    file_provenance,
    finish,
    log,
    make_names_unique,
)
from scembed.sources.readers import (
    TENX_FILES,
    count_matrices,
    holds_counts,
    read_10x,
    read_10x_counts,
    read_h5ad,
    read_pbmc68k,
)
from scembed.sources.zeisel import ZEISEL_FIELDS, read_zeisel, zeisel_layout_ok

__all__ = [
    "SOURCES",
    "TENX_FILES",
    "ZEISEL_FIELDS",
    "DownloadFault",
    "count_matrices",
    "download",
    "drop_empty_cells",
    "file_provenance",
    "finish",
    "holds_counts",
    "load_dataset",
    "make_names_unique",
    "read_10x",
    "read_10x_counts",
    "read_h5ad",
    "read_pbmc68k",
    "read_zeisel",
    "zeisel_layout_ok",
]

# A loader reads one config entry: (spec, files, download provenance) -> the counts, the
# path that names them in messages, and their provenance.
Loader = Callable[[dict, dict, dict | None], tuple[ad.AnnData, str, dict]]


def _zeisel2015(spec: dict, files: dict, download_provenance: dict | None):
    path = files.get("download") or files["path"]
    provenance = file_provenance(path, spec.get("sha256"))
    provenance.update(download_provenance or {"url": None})
    return read_zeisel(path), path, provenance


def _pbmc68k(spec: dict, files: dict, download_provenance: dict | None):
    from importlib.metadata import version

    adata = read_pbmc68k(spec["label_key"])
    path = "scanpy.datasets.pbmc68k_reduced()"
    return adata, path, {"path": path, "scanpy": version("scanpy")}


def _h5ad(spec: dict, files: dict, download_provenance: dict | None):
    path = files["path"]
    provenance = file_provenance(path, spec.get("sha256"))  # a changed file stops here
    return read_h5ad(path, spec["counts_layer"]), path, provenance


def _10x(spec: dict, files: dict, download_provenance: dict | None):
    path = files["path"]
    provenance = file_provenance(path, spec.get("sha256"))
    provenance["labels"] = file_provenance(files["labels"])
    adata = read_10x(path, files["labels"], spec["label_key"], spec.get("batch_key"))
    return adata, path, provenance


def _synthetic(spec: dict, files: dict, download_provenance: dict | None):
    from scembed.synthetic import simulate_counts, simulate_droplet_counts

    keys = ("n_cells", "n_genes", "n_types", "seed", "type_sizes")
    params = {k: spec[k] for k in keys if k in spec}
    if spec.get("n_batches", 1) > 1:  # absent with one batch: the name and provenance of before
        params["n_batches"] = spec["n_batches"]
    if spec.get("profile", "markers") == "droplet":
        adata = simulate_droplet_counts(**params, library_size=spec["library_size"])
        params.update(profile="droplet", library_size=spec["library_size"])
    else:
        adata = simulate_counts(**params)
    path = f"synthetic({params})"
    batch_key = spec.get("batch_key")
    if "n_batches" in params and batch_key is None:
        log.warning(
            "%s: the %d simulated batches (obs['batch']) are not used: the dataset has no "
            "`batch_key`; set `batch_key: batch` to give them to the methods and the "
            "integration scores",
            path,
            params["n_batches"],
        )
    if batch_key == "batch" and "batch" not in adata.obs:
        adata.obs["batch"] = "batch0"  # n_batches 1: a single batch, as the import says
    return adata, path, {"path": path, **params}


SOURCES: dict[str, Loader] = {
    "zeisel2015": _zeisel2015,
    "pbmc68k": _pbmc68k,
    "h5ad": _h5ad,
    "10x": _10x,
    "synthetic": _synthetic,
}


def load_dataset(spec: dict, files: dict, download_provenance: dict | None = None) -> ad.AnnData:
    """Read the dataset described by a validated config entry ``spec``.

    ``files`` maps "download", "path" and "labels" to the files the rule was given;
    ``download_provenance`` is the JSON the download rule wrote next to its file.
    """
    source = spec["source"]
    if source not in SOURCES:
        raise DataError(
            f"unknown source {source!r}: the sources are {', '.join(SOURCES)}. Set the "
            "dataset's `source` to one of them."
        )
    adata, path, provenance = SOURCES[source](spec, files, download_provenance)
    provenance = {"source": source, **provenance}
    return finish(adata, spec["label_key"], str(path), provenance, spec.get("batch_key"))
