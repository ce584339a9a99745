"""One training step of the VAE, run as PyTorch code or replayed from a CUDA graph.

A step (the minibatch's counts gathered on the device, the loss, backward, Adam) is a
few hundred small kernels. On the CPU it runs as plain PyTorch code (:func:`eager_step`),
the only way there, so CPU numbers do not depend on anything below. On CUDA, launching
those kernels one at a time from Python takes longer than running them at 128 cells, so
:class:`TrainingSteps` runs a few steps eagerly (on a side stream, as capture needs),
captures the next one as a CUDA graph and replays it for every further full minibatch
with the minibatch's cell indices copied into the graph's input: one launch a step and
nothing read back to the host. The graph runs the same kernels on the same parameters
(the KL weight is a tensor it reads, so the warm-up's changing weight needs no new
capture). A partial last minibatch (``drop_last: false``) and streamed counts run
eagerly; where capture fails, every step does, with a log line, and
``SCEMBED_CUDA_GRAPHS=off`` in the environment turns capture off.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

import torch

from scembed.vae.feeding import Minibatch, TrainingData

GRAPHS_ENV = "SCEMBED_CUDA_GRAPHS"
WARMUP_STEPS = 3
"""Eager steps before the capture: lazy initialisations (cuBLAS, Adam's state) happen
outside the graph."""


def eager_step(model, optimizer, data: TrainingData, batch: Minibatch, kl_weight, sums) -> None:
    """One optimisation step on ``batch``; adds its summed reconstruction loss and KL to
    the two scalar tensors ``sums``. ``kl_weight``: a float, or a scalar tensor."""
    out = model.loss(
        batch.counts(),
        data.size_factors(batch.cells),
        kl_weight=kl_weight,
        log_factorial=data.log_factorial[batch.cells],
        batch_index=data.batch_index(batch.cells),
    )
    optimizer.zero_grad(set_to_none=False)  # zeroes the flat gradient buffer in place
    out.loss.backward()
    optimizer.step()
    sums[0].add_(out.reconst_loss.detach().sum())
    sums[1].add_(out.kl_divergence_z.detach().sum())


def graphs_wanted(data: TrainingData) -> tuple[bool, str]:
    """(whether to capture the step, why not when not)."""
    if data.device.type != "cuda":
        return False, "not on CUDA"
    if os.environ.get(GRAPHS_ENV, "on") == "off":
        return False, f"{GRAPHS_ENV}=off"
    if not data.resident:
        return False, "the counts are streamed"
    return True, ""


class TrainingSteps:
    """The training steps of one run: eager ones, and on CUDA replays of one captured
    step of ``batch_size`` cells (``graphs`` None: where :func:`graphs_wanted` says).

    Per epoch: :meth:`start_epoch` with the KL weight, :meth:`run` for each minibatch,
    then :meth:`totals`, the summed (reconstruction, KL) of the epoch's cells.
    ``capture_seconds``: how long the capture took (0 without one)."""

    def __init__(self, model, optimizer, data, batch_size: int, log: Callable, graphs=None):
        self.model, self.optimizer, self.data, self.log = model, optimizer, data, log
        self.batch_size = batch_size
        if graphs is None:
            graphs, why = graphs_wanted(data)
            if not graphs and data.device.type == "cuda":
                log(f"training steps: eager ({why})")
        self.capture = graphs
        self.warmup = WARMUP_STEPS
        self.graph: _Graph | None = None
        self.capture_seconds = 0.0
        self.kl_weight = 1.0
        self.sums = ()

    def start_epoch(self, kl_weight: float) -> None:
        zeros = [torch.zeros((), device=self.data.device) for _ in range(2)]
        self.kl_weight, self.sums = kl_weight, tuple(zeros)
        if self.graph is not None:
            self.graph.start_epoch(kl_weight)

    def run(self, batch: Minibatch) -> None:
        """One step on ``batch``: replayed, captured, or eager."""
        if self.graph is not None and len(batch.cells) == self.batch_size:
            self.graph.replay(batch.cells)
        elif not self.capture or len(batch.cells) != self.batch_size:
            self._eager(batch)
        elif self.warmup > 0:
            self.warmup -= 1
            with side_stream(self.data.device):
                self._eager(batch)
        else:
            self._capture(batch)

    def totals(self) -> torch.Tensor:
        """The epoch's summed (reconstruction, KL), on the device."""
        totals = torch.stack(self.sums)
        return totals if self.graph is None else totals + self.graph.totals()

    def _eager(self, batch: Minibatch) -> None:
        eager_step(self.model, self.optimizer, self.data, batch, self.kl_weight, self.sums)

    def _capture(self, batch: Minibatch) -> None:
        """Capture the step, then replay it on ``batch``; on failure, step eagerly."""
        start = time.perf_counter()
        try:
            graph = _Graph(self.model, self.optimizer, self.data, self.batch_size, self.kl_weight)
        except Exception as err:  # noqa: BLE001 - any failure leaves the eager step
            self.capture = False
            self.log(
                f"training steps: eager (CUDA graph capture failed: {type(err).__name__}: {err})"
            )
            self._eager(batch)
            return
        self.graph, self.capture_seconds = graph, time.perf_counter() - start
        self.log(
            f"training steps: one CUDA graph of {self.batch_size} cells, captured in "
            f"{self.capture_seconds:.2f} s after {WARMUP_STEPS} eager steps"
        )
        graph.replay(batch.cells)


class _Graph:
    """The training step on ``batch_size`` resident cells, captured as a CUDA graph that
    reads its cells and KL weight from tensors of its own and adds to sums of its own."""

    def __init__(self, model, optimizer, data: TrainingData, batch_size: int, kl_weight):
        device = data.device
        self.cells = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self.kl_weight = torch.full((), kl_weight, device=device)
        self.sums = (torch.zeros((), device=device), torch.zeros((), device=device))
        self.graph = torch.cuda.CUDAGraph()
        batch = data.resident_minibatch(self.cells)
        stream = torch.cuda.current_stream(device)
        try:
            with capturable(optimizer), torch.cuda.graph(self.graph):
                eager_step(model, optimizer, data, batch, self.kl_weight, self.sums)
        finally:  # a capture that fails to end leaves its own stream current
            torch.cuda.set_stream(stream)

    def start_epoch(self, kl_weight: float) -> None:
        self.kl_weight.fill_(kl_weight)
        for total in self.sums:
            total.zero_()

    def replay(self, cells: torch.Tensor) -> None:
        self.cells.copy_(cells)
        self.graph.replay()

    def totals(self) -> torch.Tensor:
        return torch.stack(self.sums)


@contextlib.contextmanager
def side_stream(device: torch.device):
    """Run the block on a fresh CUDA stream, ordered after and before the current one
    (eager steps before a capture must not run on the capturing stream's history)."""
    current = torch.cuda.current_stream(device)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        yield
    current.wait_stream(stream)


@contextlib.contextmanager
def capturable(optimizer: torch.optim.Optimizer):
    """Admit ``optimizer.step()`` into a capture. Fused Adam runs the same kernel with or
    without ``capturable`` (its step count is on the device either way); the flag only
    lets capture through, and outside one it would warn at every eager step."""
    for group in optimizer.param_groups:
        group["capturable"] = True
    try:
        yield
    finally:
        for group in optimizer.param_groups:
            group["capturable"] = False
