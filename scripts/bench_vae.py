"""Benchmark: the book's VAE training loop against ``scembed.train.train_vae``.

Both train the same network (same parameters and initialisation) with the same loss
value, seed, optimiser settings and number of epochs on synthetic ZINB counts with
Zeisel's seven class sizes, in one process:

- book: a Dataset returning one cell's counts and its row of a DENSE cells x genes
  size-factor matrix, DataLoader(shuffle=True, drop_last=True, batch_size=100,
  num_workers=2), plain Adam, ``loss.item()`` per batch, validation loss per cell through
  a DataLoader too, and the loss written the textbook way (``BookVAE``);
- ours: ``train_vae`` (one float32 tensor, shuffled index slices, size factors per batch).

Prints seconds per epoch (mean excluding the first epoch, and median), their ratio, the
final validation loss per cell and the peak extra RSS of the process during each loop
(ours first; the book's worker processes come on top), then one epoch of each at 10x the
cells: ours needs the data tensor plus a constant, the book a multiple of the data.

    .venv/bin/python scripts/bench_vae.py --n-cells 3005 --n-genes 1000 --epochs 20
"""

import argparse
import contextlib
import ctypes
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scembed.module import VAE, LossOutput  # noqa: E402
from scembed.preprocess import split_cells  # noqa: E402
from scembed.synthetic import simulate_counts  # noqa: E402
from scembed.train import VAEParams, train_vae  # noqa: E402

ZEISEL_SIZES = (820, 939, 399, 290, 235, 224, 98)
MB = 2**20


class PeakRSS:
    """Peak RSS of this process above its value at entry, sampled every 5 ms.

    Also records the CPU seconds that other processes used meanwhile (busy time of the
    whole machine minus this process and its reaped children), a sign of a noisy run.
    """

    def __init__(self):
        self.process = psutil.Process()

    def __enter__(self):
        _release_free_memory()
        self.start = self.peak = self.process.memory_info().rss
        self.cpu_start = _busy_seconds(), _own_seconds(self.process)
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
        busy, own = _busy_seconds(), _own_seconds(self.process)
        self.other_cpu_s = max(0.0, (busy - self.cpu_start[0]) - (own - self.cpu_start[1]))


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


def book_loop(counts: np.ndarray, split: np.ndarray, params: VAEParams, seed: int):
    """The book's loop; returns (seconds per epoch, validation loss per cell per epoch)."""
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
    seconds, validation_losses = [], []
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
        validation_losses.append(validation_loss / len(validation_set))
        seconds.append(time.perf_counter() - start)
    return np.array(seconds), np.array(validation_losses)


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
    params = VAEParams(max_epochs=args.epochs, patience=args.epochs + 1, device="cpu")
    print(
        f"{args.n_cells} cells x {args.n_genes} genes, {args.epochs} epochs, seed {args.seed}, "
        f"{args.threads} threads, torch {torch.__version__}, {psutil.cpu_count()} CPUs"
    )

    # Warm-up on a slice: first-use allocations of torch (thread pools, kernels) are not
    # charged to whichever loop runs first.
    warm = VAEParams(max_epochs=1, patience=2, device="cpu")
    train_vae(counts[:400], split[:400], warm, args.seed, log=lambda message: None)
    book_loop(counts[:400], split[:400], warm, args.seed)

    with PeakRSS() as ours_memory:
        ours = train_vae(counts, split, params, args.seed, log=lambda message: None)
    ours_seconds = ours.history["seconds"].to_numpy()
    ours_validation = ours.history["validation_loss"].to_numpy()
    with PeakRSS() as book_memory:
        book_seconds, book_validation = book_loop(counts, split, params, args.seed)

    rows = [
        ("book", book_seconds, book_validation, book_memory),
        ("ours", ours_seconds, ours_validation, ours_memory),
    ]
    print(
        f"{'loop':<6}{'s/epoch mean':>14}{'median':>9}{'final val/cell':>16}"
        f"{'peak extra MB':>15}{'other CPU s':>13}"
    )
    for name, seconds, validation, memory in rows:
        mean, median = seconds[1:].mean(), np.median(seconds[1:])
        print(
            f"{name:<6}{mean:>14.3f}{median:>9.3f}{validation[-1]:>16.2f}"
            f"{memory.extra_mb:>15.1f}{memory.other_cpu_s:>13.1f}"
        )
    print(
        f"speed-up book/ours: mean {book_seconds[1:].mean() / ours_seconds[1:].mean():.2f}x, "
        f"median {np.median(book_seconds[1:]) / np.median(ours_seconds[1:]):.2f}x"
    )
    print(f"data tensor (float32): {counts.size * 4 / MB:.1f} MB")
    print("(other CPU s: CPU time used by other processes during the loop; 0 = quiet machine)")

    big_cells = args.n_cells * args.memory_scale
    big_counts = make_counts(big_cells, args.n_genes, args.seed)
    big_split = split_cells(big_cells, 0.1, 0.05, 42)
    one_epoch = VAEParams(max_epochs=1, patience=2, device="cpu")
    with PeakRSS() as big_ours:
        train_vae(big_counts, big_split, one_epoch, args.seed, log=lambda message: None)
    with PeakRSS() as big_book:
        book_loop(big_counts, big_split, one_epoch, args.seed)
    for name, cells, n_values, memory in (
        ("ours", args.n_cells, counts.size, ours_memory),
        ("ours", big_cells, big_counts.size, big_ours),
        ("book", args.n_cells, counts.size, book_memory),
        ("book", big_cells, big_counts.size, big_book),
    ):
        data_mb = n_values * 4 / MB
        print(
            f"{name} at {cells} cells: peak extra {memory.extra_mb:.1f} MB "
            f"= data tensor {data_mb:.1f} MB + {memory.extra_mb - data_mb:.1f} MB"
        )


if __name__ == "__main__":
    main()
