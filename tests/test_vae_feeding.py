"""The VAE's feeding (scembed.vae.feeding, scembed.vae.streaming): the device gather equals
scipy's densification, and dense, CSR, resident and streamed counts give the same
minibatches and the same training, bit for bit, on the CPU."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import quiet, short_params

from scembed.vae import feeding, streaming
from scembed.vae.feeding import CSRRows, HostCSRRows, TrainingData, fits_on_device, size_factors
from scembed.vae.train import train_vae

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def torch_rows(csr: sp.csr_matrix) -> CSRRows:
    """The CUDA path's gather of ``csr``, on CPU tensors."""
    lengths = np.diff(csr.indptr)
    return CSRRows(
        torch.from_numpy(csr.indptr.astype(np.int64)),
        torch.from_numpy(csr.indices.astype(np.int32)),
        torch.from_numpy(csr.data.astype(np.float32)),
        csr.shape[1],
        int(lengths.max(initial=0)),
        bool((lengths == 0).any()),
    )


def test_gather_equals_scipys_dense_rows():
    """Rows of every length (empty ones first, inside and last, one of the widest), in
    any order and repeated, come out as scipy densifies them, exactly."""
    rng = np.random.default_rng(0)
    dense = (rng.poisson(0.7, (40, 25)) * rng.integers(1, 9000, (40, 25))).astype(np.float32)
    dense[[0, 7, 39]] = 0.0
    dense[12] = np.arange(1, 26)  # a row with every gene
    csr = sp.csr_matrix(dense)
    rows = torch.tensor([0, 12, 7, 39, 3, 3, 12, 38, 1])
    expected = torch.from_numpy(csr[rows.numpy()].toarray())
    for source in (torch_rows(csr), HostCSRRows(csr)):
        assert torch.equal(source.gather(rows), expected)
        assert torch.equal(source.gather(torch.arange(40)), torch.from_numpy(dense))
    empty = sp.csr_matrix((5, 4), dtype=np.float32)  # no stored value at all: width 0
    assert torch.equal(torch_rows(empty).gather(torch.tensor([4, 0])), torch.zeros(2, 4))


def test_size_factors_equal_the_books_dense_matrix():
    x = np.random.default_rng(1).poisson(2.0, (20, 7)).astype(np.float64)
    dense = np.outer(x.sum(1), x.sum(0))
    dense *= x.mean() / dense.mean()
    row_sums, col_sums = torch.tensor(x.sum(1)), torch.tensor(x.sum(0))
    idx = torch.tensor([3, 0, 17, 3, 9])
    book = size_factors(row_sums, col_sums, float(x.sum()), idx, "book")
    np.testing.assert_allclose(book.numpy(), dense[idx.numpy()], rtol=1e-12)
    library = size_factors(row_sums, col_sums, float(x.sum()), idx, "library")
    expected = x.sum(1)[idx.numpy()] / x.sum(1).mean()
    np.testing.assert_allclose(
        np.broadcast_to(library.numpy(), (5, 7)), np.repeat(expected[:, None], 7, 1)
    )


def cell_terms(data: TrainingData, order: torch.Tensor, batch_size: int):
    """Every minibatch of ``order``: (cells, counts, size factors, count constant)."""
    return [
        (b.cells, b.counts(), data.size_factors(b.cells), data.log_factorial[b.cells])
        for b in data.minibatches(order, batch_size)
    ]


@pytest.mark.parametrize("resident", [True, False])
def test_sparse_counts_give_the_dense_minibatches(data, resident):
    """CSR counts, used in place or streamed in chunks of a few minibatches, give every
    minibatch, size factor and count constant of the dense path, in the order asked."""
    counts, _ = data
    dense = TrainingData(counts, CPU, "observed")
    sparse = TrainingData(
        sp.csr_matrix(counts), CPU, "observed", chunk_size=7, resident=resident, stream_cells=40
    )
    assert sparse.x is None and sparse.csr.nnz == np.count_nonzero(counts)
    assert (sparse.streamer is None) == resident
    assert torch.equal(dense.log_factorial, sparse.log_factorial)  # chunked the same
    order = torch.randperm(len(counts), generator=torch.Generator().manual_seed(0))
    expected = cell_terms(dense, order, 32)
    assert len(expected) == 10 and len(expected[-1][0]) == len(counts) - 9 * 32
    for ours, theirs in zip(cell_terms(sparse, order, 32), expected, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("resident", [True, False])
def test_sparse_training_data_equals_dense_with_empty_rows_and_unsorted_indices(resident):
    """The chunked sparse sums equal the dense ones exactly, with an empty cell, a chunk
    boundary inside the matrix, and unsorted CSR indices, which are sorted on a copy: the
    caller's matrix is left as it was."""
    rng = np.random.default_rng(0)
    dense = rng.poisson(0.5, size=(37, 12)).astype(np.float32)
    dense[5] = 0.0  # an empty cell
    dense[-1] = 0.0  # ... and the last one, past the last chunk's stored values
    csr = sp.csr_matrix(dense)
    order = np.concatenate(
        [
            rng.permutation(np.arange(a, b))
            for a, b in zip(csr.indptr[:-1], csr.indptr[1:], strict=True)
        ]
    )
    unsorted = sp.csr_matrix((csr.data[order], csr.indices[order], csr.indptr), shape=csr.shape)
    unsorted.has_sorted_indices = False
    indices_before = unsorted.indices.copy()
    sparse = TrainingData(unsorted, CPU, "book", chunk_size=8, resident=resident, stream_cells=6)
    reference = TrainingData(dense, CPU, "book", chunk_size=8)
    assert torch.equal(sparse.log_factorial, reference.log_factorial)
    assert torch.equal(sparse.row_sums, reference.row_sums)
    assert torch.equal(sparse.col_sums, reference.col_sums)
    assert sparse.total == reference.total
    (batch,) = sparse.minibatches(torch.arange(37), 37)
    assert torch.equal(batch.counts(), torch.from_numpy(dense))
    np.testing.assert_array_equal(unsorted.indices, indices_before)


def same_training(a, b):
    assert np.array_equal(a.latent, b.latent)
    pd.testing.assert_frame_equal(
        a.history.drop(columns="seconds"), b.history.drop(columns="seconds")
    )
    assert a.state_dict.keys() == b.state_dict.keys()
    for key, value in a.state_dict.items():
        other = b.state_dict[key]
        assert torch.equal(value, other) if torch.is_tensor(value) else value == other, key


def test_dense_sparse_resident_and_streamed_counts_train_the_same(data, monkeypatch):
    """The same seed trains the same model from dense counts, from CSR counts gathered by
    scipy (the CPU's path), by the torch gather of the CUDA path, and streamed in chunks
    of a few minibatches through that gather: losses, weights and embedding, bit for
    bit. With a batch covariate, a partial last minibatch and the KL warm-up."""
    counts, split = data
    batch = np.random.default_rng(0).integers(0, 3, len(counts))
    improved = short_params(preset="improved", kl_warmup_epochs=1, batch_size=64, max_epochs=4)
    for params, extra in ((improved, {"batch": batch}), (short_params(drop_last=False), {})):
        reference = train_vae(counts, split, params, seed=3, log=quiet, **extra)
        csr = sp.csr_matrix(counts)
        same_training(reference, train_vae(csr, split, params, seed=3, log=quiet, **extra))
        with monkeypatch.context() as patched:
            patched.setattr(feeding, "HostCSRRows", torch_rows)
            same_training(reference, train_vae(csr, split, params, seed=3, log=quiet, **extra))
        with monkeypatch.context() as patched:
            patched.setattr(feeding, "fits_on_device", lambda nbytes, device: False)
            patched.setattr(streaming, "CHUNK_BYTES", 8 * 50 * 60)  # a minibatch or two a chunk
            messages = []
            streamed = train_vae(csr, split, params, seed=3, log=messages.append, **extra)
            assert any(m.startswith("counts: streamed to cpu") for m in messages)
            same_training(reference, streamed)


def test_streamer_covers_the_order_in_whole_minibatches():
    """Chunks follow the order, each a whole number of minibatches within the budget of
    cells, and the two chunk buffers alternate without one overwriting the other."""
    csr = sp.csr_matrix(np.random.default_rng(2).poisson(1.0, (53, 6)).astype(np.float32))
    streamer = streaming.Streamer(csr, CPU, int(np.diff(csr.indptr).max()), cells=25)
    order = np.random.default_rng(3).permutation(53)
    chunks = list(streamer.chunks(order, 10))
    assert [start for start, _ in chunks] == [0, 20, 40]
    assert [chunk.n_rows for _, chunk in chunks] == [20, 20, 13]
    rows = torch_rows(csr)
    for start, chunk in streamer.chunks(order, 10):  # checked while the next one loads
        width = int(np.diff(csr.indptr).max())
        source = CSRRows(chunk.indptr, chunk.indices, chunk.values, 6, width, True)
        cells = torch.from_numpy(order[start : start + chunk.n_rows])
        assert torch.equal(source.gather(torch.arange(chunk.n_rows)), rows.gather(cells))


def test_counts_fit_on_the_cpu_and_in_half_of_a_gpus_free_memory(monkeypatch):
    assert fits_on_device(10**15, CPU)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (8 * 2**30, 80 * 2**30))
    assert fits_on_device(4 * 2**30, torch.device("cuda"))
    assert not fits_on_device(4 * 2**30 + 1, torch.device("cuda"))
