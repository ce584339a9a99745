"""Datasets with counts and cell-type labels, as the workflow's import reads them.

Each loader returns what the workflow's ``import_dataset`` job writes to ``raw.h5ad``
(:func:`scembed.sources.load_dataset`): integer counts (CSR) in ``X``, the labels as
strings in ``obs[label_key]``, ``uns["label_key"]``, ``uns["provenance"]`` and, with a
``batch_key`` of two or more batches, ``uns["batch_key"]``. Downloads are cached on disk.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import anndata as ad

from scembed.checks import DataError

__all__ = ["cache_folder", "pbmc68k", "zeisel2015"]

ZEISEL_FILE = "expression_mRNA_17-Aug-2014.txt"
CACHE_ENV = "SCEMBED_CACHE_DIR"

log = logging.getLogger("scembed.sources")


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloads are kept: ``cache_dir``, else ``$SCEMBED_CACHE_DIR``, else the
    user's cache folder (platformdirs: ``~/.cache/scembed`` on Linux)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # not a dependency of scembed; XDG's default where it is missing
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "scembed"
    return Path(user_cache_dir("scembed", appauthor=False))


def source_defaults(source: str) -> dict:
    """The schema's defaults of a dataset of ``source`` (``label_key``, ``urls``...)."""
    from scembed.schema import cached_schema

    for branch in cached_schema()["$defs"]["dataset"]["allOf"]:
        if branch["if"]["properties"]["source"].get("const") == source:
            properties = branch["then"].get("properties", {})
            return {key: spec["default"] for key, spec in properties.items() if "default" in spec}
    raise ValueError(f"no source {source!r} in the config schema")


def download_settings(**overrides) -> dict:
    """The schema's ``download`` defaults (timeouts, retries) updated with ``overrides``."""
    from scembed.schema import cached_schema

    properties = cached_schema()["$defs"]["download"]["properties"]
    defaults = {key: spec["default"] for key, spec in properties.items()}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown download setting(s) {unknown}; the settings are {sorted(defaults)}"
        )
    return {**defaults, **overrides}


def _spec(source: str, label_key: str | None, batch_key: str | None, **more) -> dict:
    spec = {"source": source, "label_key": label_key or source_defaults(source)["label_key"]}
    if batch_key is not None:
        spec["batch_key"] = batch_key
    return {**spec, **{key: value for key, value in more.items() if value is not None}}


def _cached(data: Path, record: Path, sha256: str | None) -> dict | None:
    """The download provenance of a cached file that is whole (its SHA-256 that of the
    download, or the pinned ``sha256``); None, removing it, when it is not there or not
    whole."""
    from scembed.sources import file_provenance

    if not (data.is_file() and record.is_file()):
        return None
    provenance = json.loads(record.read_text())
    expected = (sha256 or provenance.get("sha256") or "").lower()
    actual = file_provenance(data)["sha256"]
    if actual == expected:
        return provenance
    log.warning(
        "%s: the cached file's SHA-256 %s is not the expected %s; downloading it again",
        data,
        actual,
        expected,
    )
    data.unlink()
    record.unlink()
    return None


def zeisel2015(
    cache_dir: str | os.PathLike | None = None,
    *,
    label_key: str | None = None,
    batch_key: str | None = None,
    urls: list[str] | None = None,
    sha256: str | None = None,
    **download,
) -> ad.AnnData:
    """Zeisel et al. 2015: 3005 mouse cortex and hippocampus cells x 19972 genes, UMI counts.

    Downloaded once from the workflow's mirrors (tried in order, each file checked
    before it is kept: complete, the Zeisel layout with integer counts, and ``sha256``
    when given) into ``cache_dir``; later calls read the cached copy, checked against
    the SHA-256 recorded at download (a damaged copy is downloaded again).

    Parameters
    ----------
    cache_dir
        Folder of the cache; None: ``$SCEMBED_CACHE_DIR``, else the user's cache
        folder (:func:`cache_folder`). The file is kept in ``<cache_dir>/zeisel2015/``.
    label_key
        Labels: ``"level1class"`` (7 classes, the default) or ``"level2class"`` (47).
    batch_key
        A metadata row to use as the batch (``"tissue"``, ``"sex"``...), or None.
    urls
        Mirrors, tried in order (http(s):// or file://); None: the book's two.
    sha256
        Pin the file's SHA-256: another file is refused.
    **download
        The config's ``download`` settings: ``stall_timeout``, ``min_speed``,
        ``retries``, ``retry_delay`` (the schema's defaults otherwise).

    Returns
    -------
    AnnData
        As the workflow's import writes it (see the module docstring); the metadata
        rows (``tissue``, ``sex``, ``age``, ``level2class``...) are ``obs`` columns.

    Examples
    --------
    >>> adata = scembed.datasets.zeisel2015()
    >>> adata.obs["level1class"].value_counts()
    """
    from scembed.runtime import write_json
    from scembed.sources import download as fetch
    from scembed.sources import load_dataset, zeisel_layout_ok

    settings = download_settings(**download)
    urls = list(urls or source_defaults("zeisel2015")["urls"])
    folder = cache_folder(cache_dir) / "zeisel2015"
    data, record = folder / ZEISEL_FILE, folder / "download.json"
    provenance = _cached(data, record, sha256)
    if provenance is None:
        try:
            provenance = fetch(
                urls,
                data,
                sha256=sha256,
                verify=zeisel_layout_ok,
                config_key="scembed.datasets.zeisel2015",
                **settings,
            )
        except DataError as err:
            raise DataError(
                f"{err}\nFrom the API: pass urls=['file:///where/you/saved/it'] (the copy "
                f"is checked and cached in {folder})."
            ) from err
        write_json(provenance, record)
    spec = _spec("zeisel2015", label_key, batch_key, sha256=sha256)
    return load_dataset(spec, {"download": str(data)}, provenance)


def pbmc68k(label_key: str | None = None, batch_key: str | None = None) -> ad.AnnData:
    """700 human PBMCs x 765 genes with 10 FACS-sorted labels, offline.

    The integer counts recovered from scanpy's ``pbmc68k_reduced`` (it ships with
    scanpy): ``round(expm1(raw.X) * n_counts / 1e4)``, as the workflow's ``pbmc68k``
    source reads them.

    Parameters
    ----------
    label_key
        Labels: ``"bulk_labels"`` (the default) or another obs column of
        ``pbmc68k_reduced`` (``"louvain"``).
    batch_key
        An obs column to use as the batch (``"phase"``), or None.

    Returns
    -------
    AnnData
        As the workflow's import writes it (see the module docstring).
    """
    from scembed.sources import load_dataset

    return load_dataset(_spec("pbmc68k", label_key, batch_key), {})
