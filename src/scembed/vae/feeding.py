"""The counts the VAE trains on, fed to the training device a minibatch at a time.

Dense counts are one float32 tensor on the device. Sparse counts (the workflow's CSR)
stay CSR: on the CPU where they are, each minibatch densified by scipy
(:class:`HostCSRRows`); on a GPU copied there once when they fit
(:func:`fits_on_device`), each minibatch's rows gathered there by a few torch ops of
fixed shapes (:class:`CSRRows`), so that a step needs no round trip to the host and can
be captured in a CUDA graph (densifying on the host cost a copy and a synchronisation
per step and left the GPU idle: docs/speed.md). Counts that do not fit are streamed
(:class:`~scembed.vae.streaming.Streamer`): the cells of the next minibatches are
gathered on the host while the current ones train.

Every path gives the same dense minibatches, bit for bit, so the same seed trains the
same model from dense or CSR counts, gathered either way, resident or streamed (the
tests check it on the CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from scembed.vae import fused
from scembed.vae.module import SIZE_FACTORS
from scembed.vae.streaming import Streamer

DEVICE_SHARE = 0.5
"""The share of a GPU's free memory the counts may take; the rest is left to the model,
its activations and a captured step."""


def size_factors(
    row_sums: torch.Tensor, col_sums: torch.Tensor, total: float, idx: torch.Tensor, kind: str
) -> torch.Tensor:
    """Size factors of the cells ``idx``, broadcastable to (len(idx), genes).

    "book": the book's dense matrix outer(row_sums, col_sums) rescaled to the mean of
    the counts, i.e. row_sums[i] * col_sums[j] / total, one minibatch at a time.
    "library": row_sums[i] / mean(row_sums), the usual library-size factor (len(idx) x 1).
    "observed": row_sums[i], the cell's observed total count (scVI's library; pairs with
    ``decoder_output: softmax``, whose rates are fractions of it).
    ``row_sums`` and ``col_sums`` are over all cells and genes, ``total`` their sum.
    """
    if kind == "book":
        return row_sums[idx, None] * (col_sums / total)[None, :]
    if kind == "library":
        return (row_sums[idx] * (row_sums.shape[0] / total))[:, None]
    if kind == "observed":
        return row_sums[idx, None]
    raise ValueError(f"size_factor {kind!r} is not one of {SIZE_FACTORS}")


class CSRRows:
    """CSR rows on one device (``indptr`` int64, ``indices`` int32, ``values`` float32),
    densified a few rows at a time with torch ops: the gather of the CUDA path.
    ``width``: the most values any row stores; ``empty_rows``: whether any row stores
    none."""

    def __init__(self, indptr, indices, values, n_genes: int, width: int, empty_rows: bool):
        self.indptr, self.indices, self.values = indptr, indices, values
        self.n_genes, self.empty_rows = n_genes, empty_rows
        self.offsets = torch.arange(width, device=indptr.device)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows ``rows`` as a dense float32 block (len(rows) x genes), equal to
        scipy's ``csr[rows].toarray()``.

        Each row is read through ``width`` slots, those past its end reading its last
        value again (written to the same place with the same value, so the order of the
        writes does not matter and no atomic add is needed), so every shape is fixed by
        ``len(rows)``: nothing waits for the host, and the gather can be captured."""
        start, end = self.indptr[rows], self.indptr[rows + 1]
        last = (end - 1).clamp_min_(0)
        slots = torch.minimum(start[:, None] + self.offsets, last[:, None])
        dense = torch.zeros(len(rows), self.n_genes, dtype=self.values.dtype, device=rows.device)
        dense.scatter_(1, self.indices[slots].long(), self.values[slots])
        if self.empty_rows:  # an empty row read its neighbour's values: zero it
            dense.mul_((end > start)[:, None])
        return dense


class HostCSRRows:
    """CSR rows in host memory, densified by scipy: the gather of the CPU, where the
    counts then stay where they are and scipy's loop takes a third to a half of the
    time of torch's indexing kernels (0.15 against 0.36 ms for 128 droplet cells)."""

    def __init__(self, csr: sp.csr_matrix):
        self.csr = csr

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.csr[rows.numpy()].toarray())


class DenseRows:
    """Dense counts on one device; a minibatch is their rows."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        return self.x[rows]


@dataclass
class Minibatch:
    """Some cells of the data: ``cells`` (their indices, on the device) and where their
    counts are, ``rows`` of ``source`` (the cells themselves, or rows of a streamed
    chunk)."""

    cells: torch.Tensor
    rows: torch.Tensor
    source: CSRRows | HostCSRRows | DenseRows

    def counts(self) -> torch.Tensor:
        """The cells' dense counts (cells x genes, on the device)."""
        return self.source.gather(self.rows)


def csr_bytes(csr: sp.csr_matrix) -> int:
    """Device bytes of ``csr`` as :class:`CSRRows` holds it."""
    return 8 * (csr.shape[0] + 1) + 8 * csr.nnz


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` fit in ``DEVICE_SHARE`` of the device's free memory (always on
    the CPU, where the counts stay where they are)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


class TrainingData:
    """The counts of every cell, with what each minibatch needs: the per-cell count
    constant of the loss and the row and column sums of the size factors.

    Dense input: one float32 tensor on the device (on the CPU it shares memory with a
    float32 input). Sparse input: float32 CSR with sorted indices (``csr``, on the host),
    also on the device when ``resident`` (default: when :func:`fits_on_device`), else
    streamed in chunks of about ``stream_cells`` cells. :meth:`minibatches` gives the
    same minibatches either way.

    ``batch``: each cell's batch code (int64), kept on the device beside the sums; None
    when the model has no batch. ``log`` receives a line saying where the counts are.
    """

    def __init__(
        self,
        counts,
        device: torch.device,
        size_factor: str,
        chunk_size: int = 1024,
        batch: np.ndarray | None = None,
        resident: bool | None = None,
        stream_cells: int | None = None,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.device = device
        self.size_factor = size_factor
        self.n_cells = counts.shape[0]
        self.batch_codes = (
            None if batch is None else torch.as_tensor(batch, dtype=torch.int64, device=device)
        )
        self.sparse = sp.issparse(counts)
        self.streamer = None
        if self.sparse:
            self.csr = sp.csr_matrix(counts, dtype=np.float32)  # may share the indices
            if not self.csr.has_sorted_indices:  # sort a copy, never the caller's matrix
                self.csr = self.csr.copy()
                self.csr.sort_indices()
            self.x = None
            self.resident = self._place(resident, stream_cells, log)
            row_sums, col_sums = _sparse_sums(self.csr, chunk_size)
            self.log_factorial = self._log_factorial(chunk_size)
        else:
            x = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32))
            self.x = x.to(device)
            self.resident = True
            self.rows = DenseRows(self.x)
            self.log_factorial = fused.log_factorial(self.x, chunk_size=chunk_size)
            row_sums = np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel()
            col_sums = np.asarray(counts.sum(axis=0, dtype=np.float64)).ravel()
        self.total = float(row_sums.sum())
        self.row_sums = torch.as_tensor(row_sums, dtype=torch.float32, device=device)
        self.col_sums = torch.as_tensor(col_sums, dtype=torch.float32, device=device)

    def _place(self, resident: bool | None, stream_cells: int | None, log) -> bool:
        """Put the CSR counts where minibatches are gathered from (used in place on the
        CPU, copied once to a GPU), or set up their streaming; True unless streamed."""
        lengths = np.diff(self.csr.indptr)
        self.width = int(lengths.max(initial=0))
        self.empty_rows = bool((lengths == 0).any())
        nbytes = csr_bytes(self.csr)
        if resident is None:
            resident = fits_on_device(nbytes, self.device)
        size = f"{nbytes / 2**30:.2f} GiB as CSR"
        self.rows = None
        if not resident:
            self.streamer = Streamer(self.csr, self.device, self.width, stream_cells)
            log(
                f"counts: streamed to {self.device} from host memory ({size}; more than "
                f"{DEVICE_SHARE:.0%} of its free memory), {self.streamer.describe()}"
            )
        elif self.device.type == "cpu":
            self.rows = HostCSRRows(self.csr)
        else:
            arrays = (self.csr.indptr.astype(np.int64), self.csr.indices, self.csr.data)
            indptr, indices, values = (torch.from_numpy(a).to(self.device) for a in arrays)
            self.rows = self._csr_rows(indptr, indices.int(), values)
            log(f"counts: on {self.device} ({size}), each minibatch gathered there")
        return resident

    def _csr_rows(self, indptr, indices, values) -> CSRRows:
        return CSRRows(indptr, indices, values, self.csr.shape[1], self.width, self.empty_rows)

    def _log_factorial(self, chunk_size: int) -> torch.Tensor:
        """sum_g lgamma(x + 1) of every cell, ``chunk_size`` dense cells at a time: the
        kernels of the dense path on the same dense rows, hence its values bit for bit.
        Rows not gathered on the device are densified into one reused host buffer (a
        fresh array per chunk grew the process by gigabytes at 10^6 cells)."""
        n_cells, n_genes = self.csr.shape
        out = torch.empty(n_cells, dtype=torch.float32, device=self.device)
        on_device = isinstance(self.rows, CSRRows)
        block = None if on_device else np.zeros((min(chunk_size, n_cells), n_genes), np.float32)
        for start in range(0, n_cells, chunk_size):
            stop = min(start + chunk_size, n_cells)
            if on_device:
                x = self.rows.gather(torch.arange(start, stop, device=self.device))
            else:
                x = block[: stop - start]
                x.fill(0)
                x = torch.from_numpy(self.csr[start:stop].toarray(out=x)).to(self.device)
            torch.sum(x.add_(1.0).lgamma_(), -1, out=out[start:stop])
        return out

    def minibatches(self, order: torch.Tensor, batch_size: int) -> Iterator[Minibatch]:
        """The cells ``order`` (int64 on the CPU) in consecutive minibatches of
        ``batch_size`` (the last one may be smaller)."""
        for _, batch in self._batches(order, batch_size):
            yield batch

    def _batches(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[int, Minibatch]]:
        """(position in ``order``, minibatch) of consecutive minibatches of ``order``."""
        pinned = order.pin_memory() if self.device.type == "cuda" else order
        cells = pinned.to(self.device, non_blocking=True)
        if self.streamer is None:
            for start in range(0, len(order), batch_size):
                idx = cells[start : start + batch_size]
                yield start, Minibatch(idx, idx, self.rows)
            return
        for start, chunk in self.streamer.chunks(order.numpy(), batch_size):
            source = self._csr_rows(chunk.indptr, chunk.indices, chunk.values)
            for offset in range(0, chunk.n_rows, batch_size):
                stop = min(offset + batch_size, chunk.n_rows)
                rows = torch.arange(offset, stop, device=self.device)
                yield start + offset, Minibatch(cells[start + offset : start + stop], rows, source)

    def resident_minibatch(self, cells: torch.Tensor) -> Minibatch:
        """The minibatch of ``cells`` (on the device) of resident counts."""
        if not self.resident:
            raise RuntimeError("the counts are streamed: their rows are not all on the device")
        return Minibatch(cells, cells, self.rows)

    def size_factors(self, cells: torch.Tensor) -> torch.Tensor:
        """The size factors of ``cells`` (see :func:`size_factors`)."""
        return size_factors(self.row_sums, self.col_sums, self.total, cells, self.size_factor)

    def batch_index(self, cells: torch.Tensor) -> torch.Tensor | None:
        """The batch codes of ``cells``; None without a batch."""
        return None if self.batch_codes is None else self.batch_codes[cells]


def _sparse_sums(csr: sp.csr_matrix, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(row sums, column sums) of ``csr`` in float64, a chunk of cells at a time (no
    float64 copy of every value at once). The sums are of integers, hence exact in any
    order."""
    n_cells, n_genes = csr.shape
    row_sums, col_sums = np.empty(n_cells), np.zeros(n_genes)
    for start in range(0, n_cells, chunk_size):
        rows = csr[start : start + chunk_size]
        row_sums[start : start + rows.shape[0]] = np.asarray(
            rows.sum(axis=1, dtype=np.float64)
        ).ravel()
        col_sums += np.bincount(rows.indices, weights=rows.data, minlength=n_genes)
    return row_sums, col_sums
