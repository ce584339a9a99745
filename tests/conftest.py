"""Shared fixtures: run the workflow in a temporary directory with a given config."""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from scembed.schema import section_defaults
from scembed.sources import ZEISEL_FIELDS

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """As the clustering job does, before a test module imports pynndescent or umap: the
    test processes load their kernels from the numba cache instead of compiling them in
    each worker."""
    from scembed import numba_cache

    numba_cache.enable()


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(
    workdir: Path, *args: str, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run this repository's Snakefile with ``workdir`` as working directory (in ``env``,
    by default this process's environment)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        snakemake_command(workdir, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=workdir,
        env=env,
    )


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line that runs this repository's Snakefile in ``workdir``."""
    return [
        *SNAKEMAKE,
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]


class _NoSnakemake(subprocess.Popen):
    """subprocess.Popen for the tests of `make test-unit`: starting Snakemake fails."""

    def __init__(self, args, *rest, **kwargs):
        words = [args] if isinstance(args, str | bytes) else list(args)
        # the program or `python -m snakemake`, not a path such as .test/.snakemake/
        if any(re.search(r"(^|[\s/])snakemake(\s|$)", str(word)) for word in words):
            raise AssertionError(
                "this test starts Snakemake: mark it @pytest.mark.workflow (make test-unit "
                "runs only the tests that do not)"
            )
        super().__init__(args, *rest, **kwargs)


@pytest.fixture(autouse=True)
def _workflow_marker_is_honest(request, monkeypatch):
    """A test without the `workflow` (or `slurm`) marker cannot start Snakemake, so that
    `make test-unit` (-m "not workflow and not slurm") is the quick loop it says it is."""
    if not any(request.node.get_closest_marker(m) for m in ("workflow", "slurm")):
        monkeypatch.setattr(subprocess, "Popen", _NoSnakemake)


def schema_defaults(section: str) -> dict:
    """The schema's defaults of a top-level section (``preprocess``, ``cluster``): the one
    home of the defaults, which the library's signatures do not restate."""
    return section_defaults(section)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def run_workflow(tmp_path):
    """``run_workflow(config_dict, *snakemake_args)`` -> CompletedProcess, in tmp_path."""

    def run(config: dict, *args: str, timeout: int = 900):
        configfile = write_config(tmp_path / "config.yaml", config)
        return snakemake(tmp_path, "--configfile", str(configfile), *args, timeout=timeout)

    return run


def synthetic_config(**overrides) -> dict:
    """The small synthetic config of config/test.yaml, with top-level keys replaced."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config.update(overrides)
    return config


def h5ad_config(path: str, methods: dict, n_top_genes: int = 80, **overrides) -> dict:
    """A config of one small dataset `mine` read from the h5ad file at ``path``, one seed."""
    dataset = {
        "source": "h5ad",
        "path": path,
        "preprocess": {"n_top_genes": n_top_genes, "min_genes": 5},
        "cluster": {"n_neighbors": 10},
    }
    return {"datasets": {"mine": dataset}, "methods": methods, "seeds": [0], **overrides}


# --------------------------------------------------------------------------- shared data

N_CELLS, N_GENES = 12, 30
LEVEL1 = ["oligodendrocytes", "pyramidal CA1", "microglia"]
LEVEL2 = ["Oligo1", "Oligo2", "CA1Pyr1", "CA1Pyr2", "Mgl1", "Mgl2"]

DEFAULT_PLAN = {
    "download_zeisel": 1,
    "import_dataset": 1,
    "preprocess": 1,
    "embed_pca": 5,
    "train_vae": 10,
    "train_scvi": 5,
    "cluster": 20,
    "summarize": 1,
    "compare": 1,
    "plot_dataset": 1,
    "provenance": 1,
    "all": 1,
}


def zeisel_example(seed: int = 0):
    """Known counts (genes x cells, as in the file), cell ids, labels and gene symbols."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, size=(N_GENES, N_CELLS))
    counts[0, :] = np.arange(N_CELLS) * 1000  # large values; a count of 0 in the first cell
    counts[1, :] = 0  # a gene never seen
    cell_ids = [f"1772071015_C{i:02d}" for i in range(N_CELLS)]
    level2 = [LEVEL2[i % len(LEVEL2)] for i in range(N_CELLS)]
    level1 = [LEVEL1[LEVEL2.index(name) // 2] for name in level2]
    genes = [f"Gene{j}" for j in range(N_GENES)]
    return counts, cell_ids, level1, level2, genes


def zeisel_text(counts, cell_ids, level1, level2, genes, fields=ZEISEL_FIELDS) -> str:
    """The Zeisel 2015 expression file (BOOK.md): 10 metadata rows, a separator, genes."""
    n_cells = counts.shape[1]
    values = {
        "tissue": ["sscortex" if i % 2 else "ca1hippocampus" for i in range(n_cells)],
        "group #": [str(1 + i % 3) for i in range(n_cells)],
        "total mRNA mol": [str(int(c)) for c in counts.sum(axis=0)],
        "well": [str(i + 1) for i in range(n_cells)],
        "sex": ["1" if i % 2 else "-1" for i in range(n_cells)],
        "age": ["21"] * n_cells,
        "diameter": [f"{8 + i * 0.5:.1f}" for i in range(n_cells)],
        "cell_id": cell_ids,
        "level1class": level1,
        "level2class": level2,
    }
    rows = [["", name, *values[field]] for name, field in zip(fields, ZEISEL_FIELDS, strict=True)]
    rows.append([""] * (n_cells + 2))
    for j, gene in enumerate(genes):
        rows.append([gene, str(1 + j % 7), *(str(int(c)) for c in counts[j])])
    return "\n".join("\t".join(row) for row in rows) + "\n"


def write_zeisel(path: Path, seed: int = 0) -> dict:
    """Write a small Zeisel-format file; return what it holds (counts as cells x genes)."""
    counts, cell_ids, level1, level2, genes = zeisel_example(seed)
    path.write_text(zeisel_text(counts, cell_ids, level1, level2, genes))
    return {
        "path": path,
        "counts": counts.T,
        "cell_ids": cell_ids,
        "level1": level1,
        "level2": level2,
        "genes": genes,
    }


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/expression.txt"


class Routes(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, content_length or None)``; 404 otherwise."""

    def do_GET(self):  # noqa: N802 - the http.server API
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, length = route
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):  # keep the test output quiet
        pass


@contextlib.contextmanager
def serve(routes: dict):
    """An HTTP server on 127.0.0.1 (free port) in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    server.routes = routes
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def warnings_of(caplog) -> list[str]:
    """The messages that scembed.sources logged (an import's repairs)."""
    return [r.getMessage() for r in caplog.records if r.name == "scembed.sources"]


def labelled_h5ad(path: Path, layer: bool = False) -> np.ndarray:
    """An h5ad file with integer counts (in X, or in a layer with log-normalised X)."""
    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, size=(20, 8)).astype(np.float32)
    counts[:, 0] += 1  # no empty cell
    obs = pd.DataFrame(
        {"cell_type": [f"t{i % 3}" for i in range(20)], "batch": ["b1"] * 20},
        index=[f"c{i}" for i in range(20)],
    )
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs)
    if layer:
        adata.layers["raw_counts"] = adata.X.copy()
        normalised = counts / counts.sum(1, keepdims=True) * 1e4
        adata.X = sp.csr_matrix(np.log1p(normalised))
    adata.write_h5ad(path)
    return counts


# --------------------------------------------------------------------------- training

TRAIN_CELLS, TRAIN_GENES = 300, 50


@pytest.fixture
def one_thread():
    """Tiny matrices gain nothing from threads, and on a busy machine threads thrash
    (training tests: ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """(counts, split) of 300 cells x 50 genes of three types: 255 train, 30 validation."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, TRAIN_CELLS)
    means = rng.lognormal(0.0, 1.0, (3, TRAIN_GENES))
    counts = rng.poisson(means[labels] * rng.lognormal(0, 0.3, (TRAIN_CELLS, 1)))
    counts[rng.random(counts.shape) < 0.2] = 0
    split = np.array(["train"] * 255 + ["validation"] * 30 + ["test"] * 15)[
        rng.permutation(TRAIN_CELLS)
    ]
    return counts.astype(np.int64), split


def short_params(**overrides):
    """VAEParams of a small network trained for 3 epochs on the CPU, with ``overrides``."""
    from scembed.vae.params import resolve_params

    base = {"n_hidden": 32, "batch_size": 50, "max_epochs": 3, "patience": 10, "device": "cpu"}
    return resolve_params({**base, **overrides})


def quiet(_message):
    """A ``log`` that drops the training's progress lines."""


def rule_script(name: str):
    """The workflow's rule script workflow/scripts/<name>.py as a module (its ``main``
    takes the ``snakemake`` object), loaded from its file: the scripts are not a package."""
    import importlib.util

    path = REPO / "workflow" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"rule_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the notebook API against the jobs (tests/test_tl_*.py) ---


@pytest.fixture(scope="module")
def pbmc_pre():
    """pbmc68k through the book's preprocessing, with its cell-cycle phase as the batch."""
    import scembed

    adata = scembed.pp.book(
        scembed.datasets.pbmc68k(), batch_key="phase", n_top_genes=300, min_genes=50
    )
    return adata


@pytest.fixture(scope="module")
def pbmc_plain(pbmc_pre):
    """The same cells without a batch."""
    adata = pbmc_pre.copy()
    del adata.uns["batch_key"]
    return adata
