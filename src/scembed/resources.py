"""Requests that follow the data: each job's ``mem_mb`` (Slurm's ``--mem``) and the
clustering job's threads (``--cpus-per-task``).

A job's peak memory is a fixed part (Python, scanpy or torch, the model) plus a multiple
of the matrices it reads. :data:`MEM_MODEL` holds both per rule, measured by
``make bench-scale`` (tools/bench_scale.py) from 10^4 to 10^6 cells with a margin;
:func:`data_mb` reads the uncompressed size of an input's matrices from the HDF5 header
without loading them, so a request is known before the job starts and grows with the
data instead of a fixed 4 GB that a 10^6-cell job would exceed.
"""

from __future__ import annotations

import functools
import os

import h5py

MEM_MODEL = {  # rule: (fixed MB, MB per MB of the matrices read)
    # Measured by make bench-scale on droplet data, peak RSS at 10^4 / 10^5 / 10^6 cells
    # x 2000 genes against the MB of data_mb (in brackets); the model asks for about 1.5x
    # the measured peak at 10^6 and more below it.
    "import_dataset": (1000, 2.0),  # 576 / 874 / 3652 MB (synthetic_mb 23 / 229 / 2289)
    "preprocess": (1000, 2.5),  # 458 / 1072 / 3051 MB (raw.h5ad 26 / 181 / 1613)
    "embed_pca": (1000, 1.8),  # 282 / 732 / 4526 MB (preprocessed.h5ad 52 / 362 / 3221)
    "train_vae": (1500, 1.2),  # 474 / 716 / 3016 MB (the same)
    "train_scvi": (3000, 4.0),  # not measured at scale: scvi-tools holds the AnnData
    "cluster": (1000, 180.0),  # 740 / 1099 / 6724 MB (embedding.h5ad 0.5 / 4.8 / 47.6):
    # it reads only the embedding, but the kNN graph and Leiden grow with the cells
    "integration": (1500, 100.0),  # 1177 / 1458 MB at 10^4 / 10^5 (embedding.h5ad of 10
    # dimensions); 10^6 not measured: its 90-neighbour kNN holds about 1 KB per cell
}
LARGE_DATA_CELLS = 100_000
"""From this many cells the data is large: the clustering job takes approximate neighbours
and igraph's Leiden (scembed.cluster, with knn_search and leiden_flavor ``auto``) and asks
for :data:`CLUSTER_THREADS`. Defined here, the planning side, which imports neither numba
nor scanpy."""
CLUSTER_THREADS = 4  # a clustering job's threads from ...
CLUSTER_THREADS_FROM_CELLS = LARGE_DATA_CELLS  # ... this many cells: one thread below
# Below 10^5 cells a job is mostly fixed cost (start, imports) and runs beside the
# others on one core each. From there the exact kNN-transfer search (104 s on one core,
# 69 s on two, for 10^6 cells), k-means and the silhouette use the threads; Leiden runs
# on one. The kNN transfer's score is the same at any thread count; the graph's
# NN-descent uses numba's threads, which the job's thread count does not set.
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


def n_obs(path: str | os.PathLike) -> int:
    """Cells in an .h5ad file, read from its header (the length of the ``obs`` index);
    0 when the file is missing or unreadable (the job itself will say why)."""
    if not os.path.isfile(path) or not h5py.is_hdf5(path):
        return 0
    try:
        with h5py.File(path, "r") as handle:
            obs = handle["obs"]
            return int(obs[obs.attrs["_index"]].shape[0])
    except (OSError, KeyError):
        return 0


def cluster_threads_of_cells(n_cells: int) -> int:
    """Threads of a clustering job of ``n_cells`` cells: :data:`CLUSTER_THREADS` from
    :data:`CLUSTER_THREADS_FROM_CELLS` cells, one below."""
    return CLUSTER_THREADS if n_cells >= CLUSTER_THREADS_FROM_CELLS else 1


def cluster_threads(embedding: str | os.PathLike) -> int:
    """Threads of the clustering job of ``embedding`` (one before the file exists)."""
    return cluster_threads_of_cells(n_obs(embedding))


def local_gpus() -> int:
    """NVIDIA GPUs a job started on this machine can use, found without importing torch:
    the devices in ``CUDA_VISIBLE_DEVICES`` when it is set (empty or -1: none), else those
    the driver lists in /proc/driver/nvidia/gpus, else ``nvidia-smi -L``'s; 0 when none
    answers."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d for d in visible.replace(" ", "").split(",") if d]
        return 0 if not devices or devices[0].startswith("-") else len(devices)
    driver = "/proc/driver/nvidia/gpus"
    if os.path.isdir(driver):
        return len(os.listdir(driver))
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


@functools.cache
def _local_gpus_once() -> int:
    return local_gpus()


def gpu_request(device: str) -> int:
    """The ``gpu`` resource of a training job on ``device`` started from this machine
    (its GPUs looked up once per process): :func:`gpu_units`. profiles/local's ``gpu``
    count lets that many run at once; profiles/slurm sets 1 for its GPU node instead."""
    return gpu_units(device, _local_gpus_once())


def gpu_units(device: str, gpus: int) -> int:
    """The ``gpu`` resource a training job on ``device`` (a method's ``device`` key) asks
    for on a machine with ``gpus`` GPUs: one when it will train on one, so that the
    profile's ``gpu`` count lets that many share the machine; none when it trains on the
    CPU, so that CPU training jobs run side by side on the cores."""
    return 0 if device == "cpu" or gpus == 0 else 1
