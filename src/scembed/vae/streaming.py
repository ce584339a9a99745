"""CSR counts streamed to the training device, for counts that do not fit there.

The cells of the next minibatches, in the order training takes them, are gathered from
the host's CSR into one of two chunk buffers (pinned on CUDA) by a background thread and
copied to the device on a stream of their own, while the steps of the current chunk
run; events order the copy after the last read of the buffer it overwrites and the steps
after the copy, so that the host never waits for a step. On the CPU the chunk buffers
are the host ones and the same code gathers into them (tests force this path there).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

CHUNK_BYTES = 2**27
"""Bytes of values and indices one chunk buffer holds (two on the host, two on the device)."""


@dataclass
class Chunk:
    """Consecutive cells of an order, as CSR rows on the device: ``indptr``, ``indices``
    and ``values`` views of a chunk buffer, and ``n_rows``."""

    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    n_rows: int


class _Slot:
    """One chunk buffer: CSR arrays on the host (pinned on CUDA) and their device copies
    (the same tensors on the CPU), with the events that order their reuse on CUDA."""

    def __init__(self, cells: int, capacity: int, device: torch.device):
        cuda = device.type == "cuda"
        shapes = ((cells + 1, torch.int64), (capacity, torch.int32), (capacity, torch.float32))
        self.host = [torch.empty(n, dtype=dtype, pin_memory=cuda) for n, dtype in shapes]
        self.device = [torch.empty_like(t, device=device) for t in self.host] if cuda else self.host
        self.copied = torch.cuda.Event() if cuda else None  # host -> device copy done
        self.consumed = torch.cuda.Event() if cuda else None  # the last step reading it


class Streamer:
    """Chunks of the CSR rows of ``csr`` (float32, sorted indices) on ``device``, in any
    order of cells; ``width`` is the most values a row stores, ``cells`` the cells a
    chunk holds at most (default: what fits in ``CHUNK_BYTES``)."""

    def __init__(self, csr: sp.csr_matrix, device: torch.device, width: int, cells=None):
        if device.type == "cuda" and device.index is None:  # the worker thread's device
            device = torch.device("cuda", torch.cuda.current_device())
        self.csr, self.device, self.width = csr, device, width
        self.cells = cells or max(1, CHUNK_BYTES // (8 * max(width, 1)))
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.slots: list[_Slot] = []
        self.slot_cells = 0

    def describe(self) -> str:
        return f"chunks of up to {self.cells:,} cells, two ahead of each other"

    def chunks(self, order: np.ndarray, batch_size: int) -> Iterator[tuple[int, Chunk]]:
        """(position in ``order``, chunk) of consecutive chunks of the cells ``order``,
        each a whole number of minibatches of ``batch_size``. The next chunk is loaded
        while the caller queues the steps of the current one."""
        per_chunk = max(1, self.cells // batch_size) * batch_size
        if per_chunk > self.slot_cells:
            self.slots = [_Slot(per_chunk, per_chunk * self.width, self.device) for _ in "ab"]
            self.slot_cells = per_chunk
        starts = range(0, len(order), per_chunk)
        current = torch.cuda.current_stream(self.device) if self.copy_stream else None
        with ThreadPoolExecutor(1, thread_name_prefix="scembed-stream") as loader:
            pending = loader.submit(self._load, self.slots[0], order[:per_chunk])
            try:
                for number, start in enumerate(starts):
                    chunk, slot = pending.result(), self.slots[number % 2]
                    if current is not None:
                        current.wait_event(slot.copied)
                    if number + 1 < len(starts):
                        cells = order[start + per_chunk : start + 2 * per_chunk]
                        pending = loader.submit(self._load, self.slots[(number + 1) % 2], cells)
                    yield start, chunk
                    if current is not None:  # every step reading the slot is queued by now
                        slot.consumed.record(current)
            finally:  # also when the caller stops early: no copy outlives the pass
                pending.result()
                if self.copy_stream is not None:
                    self.copy_stream.synchronize()

    def _load(self, slot: _Slot, cells: np.ndarray) -> Chunk:
        """Gather the rows ``cells`` into ``slot`` and start their copy to the device."""
        rows = self.csr[cells]
        sizes = (len(cells) + 1, rows.nnz, rows.nnz)
        if self.copy_stream is not None:
            slot.copied.synchronize()  # the slot's previous copy has left the host buffers
        for host, array, size in zip(
            slot.host, (rows.indptr, rows.indices, rows.data), sizes, strict=True
        ):
            host[:size].numpy()[:] = array
        if self.copy_stream is not None:
            with torch.cuda.device(self.device), torch.cuda.stream(self.copy_stream):
                self.copy_stream.wait_event(slot.consumed)  # no step reads the slot any more
                for host, device, size in zip(slot.host, slot.device, sizes, strict=True):
                    device[:size].copy_(host[:size], non_blocking=True)
                slot.copied.record(self.copy_stream)
        indptr, indices, values = (t[:size] for t, size in zip(slot.device, sizes, strict=True))
        return Chunk(indptr, indices, values, len(cells))
