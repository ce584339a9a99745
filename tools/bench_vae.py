"""Benchmark: the book's VAE training loop against ``scembed.vae.train.train_vae``.

Both train the same network (same parameters and initialisation) with the same loss
value, seed, optimiser settings and number of epochs on synthetic ZINB counts with
Zeisel's seven class sizes, timed in one process:

- book: a Dataset returning one cell's counts and its row of a DENSE cells x genes
  size-factor matrix, DataLoader(shuffle=True, drop_last=True, batch_size=100,
  num_workers=2), plain Adam, ``loss.item()`` per batch, validation loss per cell through
  a DataLoader too, and the loss written the textbook way (``BookVAE``);
- ours: ``train_vae`` (one float32 tensor, shuffled index slices, size factors per
  batch, the fused loss of ``scembed.vae.fused``, Adam over one flat parameter buffer).

The two loops run interleaved, one epoch of each in turn, so that a slow spell of a
shared machine slows both alike. Prints seconds per epoch (mean excluding the first
epoch, and median), their ratio and the final validation loss per cell; then the peak
extra RSS during one epoch of each loop, each in a fresh process (the book's worker
processes come on top), at the given cells and at 10x: ours needs the data tensor plus
a constant, the book a multiple of the data.

    .venv/bin/python tools/bench_vae.py --n-cells 3005 --n-genes 1000 --epochs 20
"""

import argparse
import contextlib
import ctypes
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import psutil
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence
from torch.utils.data import DataLoader, Dataset

from scembed.preprocess import split_cells  # noqa: E402
from scembed.synthetic import simulate_counts  # noqa: E402
from scembed.vae.module import VAE, LossOutput  # noqa: E402
from scembed.vae.params import VAEParams, resolve_params  # noqa: E402
from scembed.vae.train import train_vae  # noqa: E402

ZEISEL_SIZES = (820, 939, 399, 290, 235, 224, 98)
MB = 2**20


class PeakRSS:
    """Peak RSS of this process above its value at entry, sampled every 5 ms."""

    def __init__(self):
        self.process = psutil.Process()

    def __enter__(self):
        _release_free_memory()
        self.start = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
        self.extra_mb = (self.peak - self.start) / MB


class OtherCPU:
    """CPU seconds that other processes used meanwhile (busy time of the whole machine
    minus this process and its reaped children): 0 on a quiet machine."""

    def __enter__(self):
        self.process = psutil.Process()
        self.start = _busy_seconds(), _own_seconds(self.process)
        return self

    def __exit__(self, *exc):
        busy, own = _busy_seconds(), _own_seconds(self.process)
        self.seconds = max(0.0, (busy - self.start[0]) - (own - self.start[1]))


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _own_seconds(process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _release_free_memory():
    """Return freed heap pages to the OS (glibc), so one loop's leftovers do not hide the
    next loop's allocations."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def make_counts(n_cells: int, n_genes: int, seed: int) -> np.ndarray:
    """Dense int32 counts with Zeisel's class proportions (scembed.synthetic)."""
    sizes = np.round(np.array(ZEISEL_SIZES) * n_cells / sum(ZEISEL_SIZES)).astype(int)
    sizes[np.argmax(sizes)] += n_cells - sizes.sum()
    adata = simulate_counts(n_cells, n_genes, len(sizes), seed, type_sizes=sizes.tolist())
    return adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)


class BookVAE(VAE):
    """The same network, parameters and initialisation, with the loss written the textbook
    way: ``torch.distributions`` for the posterior sample and the KL, and the zero-inflated
    negative binomial as the classic scVI-style two-case formula with float masks.
    Only the zinb likelihood (the book's default) is written out here."""

    def inference(self, x):
        qz_m, qz_scale = self.z_encoder(x)
        return {"qz_m": qz_m, "qz_scale": qz_scale, "z": Normal(qz_m, qz_scale).rsample()}

    def log_likelihood(self, x, px, eps=1e-8):
        mu, theta, pi = px["px_rate"], px["px_r"], px["px_dropout"]
        softplus_pi = F.softplus(-pi)
        log_theta_eps = torch.log(theta + eps)
        log_theta_mu_eps = torch.log(theta + mu + eps)
        pi_theta_log = -pi + theta * (log_theta_eps - log_theta_mu_eps)
        case_zero = F.softplus(pi_theta_log) - softplus_pi
        mul_case_zero = torch.mul((x < eps).type(torch.float32), case_zero)
        case_non_zero = (
            -softplus_pi
            + pi_theta_log
            + x * (torch.log(mu + eps) - log_theta_mu_eps)
            + torch.lgamma(x + theta)
            - torch.lgamma(theta)
            - torch.lgamma(x + 1)
        )
        mul_case_non_zero = torch.mul((x > eps).type(torch.float32), case_non_zero)
        return mul_case_zero + mul_case_non_zero

    def loss(self, x, size_factor, kl_weight=1.0):
        qz = self.inference(x)
        px = self.generative(qz["z"], size_factor)
        reconst_loss = -self.log_likelihood(x, px).sum(dim=-1)
        prior = Normal(torch.zeros_like(qz["qz_m"]), torch.ones_like(qz["qz_scale"]))
        kl = kl_divergence(Normal(qz["qz_m"], qz["qz_scale"]), prior).sum(dim=-1)
        return LossOutput(reconst_loss.sum() + kl_weight * kl.sum(), reconst_loss, kl, len(x))


class BookDataset(Dataset):
    """One cell's counts and its row of the dense size-factor matrix, as in the book."""

    def __init__(self, x: torch.Tensor, size_factor: torch.Tensor):
        self.x = x
        self.size_factor = size_factor

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.x[i], self.size_factor[i]


def book_epochs(counts: np.ndarray, split: np.ndarray, params: VAEParams, seed: int):
    """The book's loop, one epoch per ``next``: yields (seconds, validation loss per cell)."""
    x = torch.tensor(counts, dtype=torch.float32)
    size_factor = torch.outer(x.sum(1), x.sum(0))
    size_factor = size_factor * (x.mean() / size_factor.mean())
    train, validation = split == "train", split == "validation"
    train_set = BookDataset(x[train], size_factor[train])
    validation_set = BookDataset(x[validation], size_factor[validation])

    torch.manual_seed(seed)
    model = BookVAE(
        counts.shape[1],
        params.n_latent,
        params.n_hidden,
        params.n_layers,
        params.likelihood,
        params.posterior_scale,
        params.encoder_input,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    train_loader = DataLoader(
        train_set, batch_size=params.batch_size, shuffle=True, drop_last=True, num_workers=2
    )
    validation_loader = DataLoader(validation_set, batch_size=params.batch_size, num_workers=2)
    for _ in range(params.max_epochs):
        start = time.perf_counter()
        model.train()
        train_loss = 0.0
        for x_batch, sf_batch in train_loader:
            optimizer.zero_grad()
            loss = model.loss(x_batch, sf_batch).loss
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
        model.eval()
        validation_loss = 0.0
        with torch.no_grad():
            for x_batch, sf_batch in validation_loader:
                validation_loss += model.loss(x_batch, sf_batch).loss.item()
        yield time.perf_counter() - start, validation_loss / len(validation_set)


def interleaved(counts: np.ndarray, split: np.ndarray, params: VAEParams, seed: int):
    """Train both, alternating epochs: the book's next epoch runs while ours logs one, so
    a slow spell of a shared machine hits both loops alike. Each epoch's seconds are
    taken inside its own loop, and each loop keeps its own torch random state, so both
    train exactly as they would alone. Returns {"book"|"ours": (seconds, validation)}."""
    book = book_epochs(counts, split, params, seed)
    book_rows, book_rng = [], [torch.get_rng_state()]

    def book_epoch(epoch):
        ours_rng = torch.get_rng_state()
        torch.set_rng_state(book_rng[0])
        book_rows.append(next(book))
        book_rng[0] = torch.get_rng_state()
        torch.set_rng_state(ours_rng)

    ours = train_vae(counts, split, params, seed, log=lambda message: None, on_epoch=book_epoch)
    book_seconds, book_validation = (np.array(column) for column in zip(*book_rows, strict=True))
    return {
        "book": (book_seconds, book_validation),
        "ours": (ours.history["seconds"].to_numpy(), ours.history["validation_loss"].to_numpy()),
    }


def _peak_memory_job(loop: str, n_cells: int, n_genes: int, seed: int, threads: int) -> float:
    """Peak extra RSS (MB) of one epoch of ``loop`` in this (fresh) process, after a
    warm-up on 400 cells that takes torch's first-use allocations out of the number."""
    torch.set_num_threads(threads)
    counts = make_counts(n_cells, n_genes, seed)
    split = split_cells(n_cells, 0.1, 0.05, 42)
    one_epoch = resolve_params({"max_epochs": 1, "patience": 2, "device": "cpu"})
    run = {
        "ours": lambda c, s: train_vae(c, s, one_epoch, seed, log=lambda message: None),
        "book": lambda c, s: list(book_epochs(c, s, one_epoch, seed)),
    }[loop]
    run(counts[:400], split[:400])
    with PeakRSS() as memory:
        run(counts, split)
    return memory.extra_mb


def peak_memory(loop: str, n_cells: int, args) -> float:
    """``_peak_memory_job`` in a new process: RSS is then independent of what ran before."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        job = pool.submit(_peak_memory_job, loop, n_cells, args.n_genes, args.seed, args.threads)
        return job.result()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-cells", type=int, default=3005)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-scale", type=int, default=10, help="cells multiplier")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    counts = make_counts(args.n_cells, args.n_genes, args.seed)
    split = split_cells(args.n_cells, 0.1, 0.05, 42)
    params = resolve_params(
        {"max_epochs": args.epochs, "patience": args.epochs + 1, "device": "cpu"}
    )
    print(
        f"{args.n_cells} cells x {args.n_genes} genes, {args.epochs} epochs, seed {args.seed}, "
        f"{args.threads} threads, torch {torch.__version__}, {psutil.cpu_count()} CPUs"
    )

    # Warm-up on a slice: first-use allocations of torch (thread pools, kernels) are not
    # charged to whichever loop runs first.
    warm = resolve_params({"max_epochs": 1, "patience": 2, "device": "cpu"})
    interleaved(counts[:400], split[:400], warm, args.seed)

    with OtherCPU() as busy:
        runs = interleaved(counts, split, params, args.seed)
    print(f"{'loop':<6}{'s/epoch mean':>14}{'median':>9}{'final val/cell':>16}")
    for name in ("book", "ours"):
        seconds, validation = runs[name]
        print(
            f"{name:<6}{seconds[1:].mean():>14.3f}{np.median(seconds[1:]):>9.3f}"
            f"{validation[-1]:>16.2f}"
        )
    (book_seconds, _), (ours_seconds, _) = runs["book"], runs["ours"]
    print(
        f"speed-up book/ours: mean {book_seconds[1:].mean() / ours_seconds[1:].mean():.2f}x, "
        f"median {np.median(book_seconds[1:]) / np.median(ours_seconds[1:]):.2f}x "
        f"(epochs 2-{args.epochs}, interleaved; other processes used {busy.seconds:.1f} CPU s)"
    )

    print("peak extra memory of one epoch, each in a new process = data tensor (float32) + rest:")
    for name in ("ours", "book"):
        for cells in (args.n_cells, args.n_cells * args.memory_scale):
            extra_mb, data_mb = peak_memory(name, cells, args), cells * args.n_genes * 4 / MB
            print(
                f"{name} at {cells} cells: {extra_mb:.1f} MB = {data_mb:.1f} MB + "
                f"{extra_mb - data_mb:.1f} MB"
            )


if __name__ == "__main__":
    main()
