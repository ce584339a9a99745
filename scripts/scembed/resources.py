"""Memory requests that follow the data: each job's ``mem_mb`` (Slurm's ``--mem``).

A job's peak memory is a fixed part (Python, scanpy or torch, the model) plus a multiple
of the matrices it reads. :data:`MEM_MODEL` holds both per rule, measured by
``make bench-scale`` (tools/bench_scale.py) from 10^4 to 10^6 cells with a margin;
:func:`data_mb` reads the uncompressed size of an input's matrices from the HDF5 header
without loading them, so a request is known before the job starts and grows with the
data instead of a fixed 4 GB that a 10^6-cell job would exceed.
"""

from __future__ import annotations

import os

import h5py

MEM_MODEL = {  # rule: (fixed MB, MB per MB of the matrices read), from make bench-scale
    "import_dataset": (1500, 4.0),
    "preprocess": (1500, 3.0),
    "embed_pca": (1500, 2.5),
    "train_vae": (2500, 2.5),
    "train_scvi": (3000, 4.0),
    "cluster": (2000, 60.0),  # reads only the embedding; the kNN graph grows with the cells
}
GZIP_RATIO = 5  # a gzipped text or matrix file holds about this many times its size
SYNTHETIC_DENSITY = {"markers": 0.6, "droplet": 0.15}  # non-zero fraction of the counts


def data_mb(path: str | os.PathLike) -> float:
    """Uncompressed MB of the data in ``path`` (a file or a folder): every HDF5 dataset's
    size for .h5ad and .h5 files (read from the header, not loaded), the size on disk
    for other files (times :data:`GZIP_RATIO` when gzipped); 0 for a missing path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return sum(data_mb(os.path.join(path, name)) for name in os.listdir(path))
    if not os.path.isfile(path):
        return 0.0
    if h5py.is_hdf5(path):
        total = 0

        def add(_name, item):
            nonlocal total
            if isinstance(item, h5py.Dataset) and item.size:  # None for a null dataset
                total += item.size * item.dtype.itemsize

        try:
            with h5py.File(path, "r") as handle:
                handle.visititems(add)
        except OSError:  # unreadable: the job itself will say why; ask for the fixed part
            return 0.0
        return total / 2**20
    return os.path.getsize(path) * (GZIP_RATIO if path.endswith(".gz") else 1) / 2**20


def synthetic_mb(spec: dict) -> float:
    """MB of the CSR counts (int32 values and indices) a synthetic dataset will have."""
    n_cells = sum(spec["type_sizes"]) if spec.get("type_sizes") else spec["n_cells"]
    density = SYNTHETIC_DENSITY[spec.get("profile", "markers")]
    return n_cells * spec["n_genes"] * density * 8 / 2**20


def job_mem_mb(rule: str, inputs, attempt: int = 1, dataset: dict | None = None) -> int:
    """``mem_mb`` of a job of ``rule`` reading ``inputs`` (for the import of a synthetic
    ``dataset``, the counts it will simulate), times ``attempt`` so that a retry after an
    out-of-memory kill asks for more."""
    fixed, per_mb = MEM_MODEL[rule]
    data = sum(data_mb(path) for path in inputs)
    if dataset is not None and dataset.get("source") == "synthetic":
        data += synthetic_mb(dataset)
    return attempt * int(fixed + per_mb * data)
