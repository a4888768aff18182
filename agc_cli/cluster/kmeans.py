"""k-means on node embeddings: scikit-learn, full-batch torch and mini-batch torch backends.

The torch backends run on any device and keep distance blocks at ``chunk_size x k``, so memory
beyond the embeddings themselves stays O(chunk x k + N). The mini-batch backend reads the
embeddings block by block, so they may be a memory-mapped ``.npy`` larger than RAM.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from agc_cli.errors import DataError, UsageError

BACKENDS = ("auto", "sklearn", "torch", "minibatch")
# On CPU scikit-learn's fused Cython Lloyd is as fast as the torch backend (bench_kmeans.py), but
# every iteration of every one of n_init runs is a full pass: beyond this size mini-batch wins.
SKLEARN_MAX_NODES = 1_000_000
# On an accelerator full passes are cheap; from here on the embeddings may not fit in device
# memory, and mini-batch reads them block by block.
MINIBATCH_MIN_NODES = 10_000_000
# Elements in one distance or feature block (64 MiB of float32).
_BLOCK_ELEMENTS = 1 << 24
# The mini-batch backend seeds on a random sample of this many rows per cluster (at least).
_SAMPLE_ROWS_PER_CLUSTER = 256
# Mini-batches drawn from one contiguous block of rows read at once.
_BATCHES_PER_BLOCK = 8


@dataclass
class KMeansResult:
    """Outcome of :func:`kmeans`; tensors are on the CPU.

    Attributes:
        labels: int64 ``[N]`` cluster of every row.
        centroids: float32 ``[k, D]``, in the (normalised, if asked) embedding space.
        inertia: sum of squared distances of the rows to their centroids.
        backend: the backend that ran (never ``"auto"``).
        n_iter: Lloyd iterations of the best run (epochs for ``"minibatch"``).
    """

    labels: Tensor
    centroids: Tensor
    inertia: float
    backend: str
    n_iter: int


class _Fit(NamedTuple):
    centers: Tensor
    labels: Tensor
    inertia: float
    n_iter: int


def choose_backend(num_nodes: int, device: torch.device | str = "cpu") -> str:
    """The backend ``backend="auto"`` runs for ``num_nodes`` rows on ``device``.

    CPU: ``"sklearn"`` up to :data:`SKLEARN_MAX_NODES` rows, then ``"minibatch"``. Accelerators:
    ``"torch"`` below :data:`MINIBATCH_MIN_NODES` rows, then ``"minibatch"``.
    """
    if torch.device(device).type == "cpu":
        return "sklearn" if num_nodes <= SKLEARN_MAX_NODES else "minibatch"
    return "torch" if num_nodes < MINIBATCH_MIN_NODES else "minibatch"


def kmeans(
    embeddings: Tensor | np.ndarray,
    n_clusters: int,
    *,
    seed: int,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    backend: str = "auto",
    normalize: bool = False,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    batch_size: int = 32_768,
) -> KMeansResult:
    """Cluster the rows of ``embeddings`` with k-means (k-means++ seeding, best of ``n_init``).

    Deterministic given ``seed`` on a given device and backend.

    Args:
        embeddings: ``[N, D]`` float tensor or numpy array (a memory map is read in blocks by
            ``"minibatch"`` and loaded whole by the other backends).
        n_clusters: number of clusters ``k``, at most ``N``.
        seed: random seed of the seeding and of the mini-batch order.
        n_init: seedings tried; the run with the lowest inertia wins.
        max_iter: Lloyd iterations per run (passes over the data for ``"minibatch"``).
        tol: stop once the squared centroid shift is below ``tol`` times the mean feature
            variance (scikit-learn's rule).
        backend: ``"auto"`` (see :func:`choose_backend`), ``"sklearn"``, ``"torch"`` or
            ``"minibatch"``.
        normalize: L2-normalise every row first.
        device: device of the torch backends; default the tensor's device (CPU for numpy).
        chunk_size: rows per distance block; default keeps a block near 64 MiB.
        batch_size: rows per update of ``"minibatch"``.

    Returns:
        A :class:`KMeansResult` with CPU tensors.

    Raises:
        UsageError: bad ``n_clusters``, ``n_init``, ``max_iter``, ``backend`` or sizes.
        DataError: embeddings that are not 2-D or hold NaN or infinite values.
    """
    if embeddings.ndim != 2:
        raise DataError(f"embeddings must be 2-D [N, D], got shape {tuple(embeddings.shape)}")
    num_rows, dim = int(embeddings.shape[0]), int(embeddings.shape[1])
    if backend not in BACKENDS:
        raise UsageError(f"unknown k-means backend {backend!r}; choose one of {BACKENDS}")
    if not 1 <= n_clusters <= num_rows:
        raise UsageError(
            f"n_clusters={n_clusters} must be between 1 and the number of rows ({num_rows})"
        )
    for name, value in (("n_init", n_init), ("max_iter", max_iter), ("batch_size", batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if chunk_size is not None and chunk_size < 1:
        raise UsageError(f"chunk_size must be at least 1, got {chunk_size}")
    if isinstance(embeddings, Tensor):
        embeddings = embeddings.detach()
    if device is None:
        device = embeddings.device if isinstance(embeddings, Tensor) else torch.device("cpu")
    device = torch.device(device)
    if backend == "auto":
        backend = choose_backend(num_rows, device)
    chunk = chunk_size or max(256, _BLOCK_ELEMENTS // max(n_clusters, dim))

    if backend == "sklearn":
        x = _load(embeddings, torch.device("cpu"), normalize)
        return _sklearn_kmeans(x, n_clusters, seed, n_init, max_iter, tol)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    if backend == "torch":
        x = _load(embeddings, device, normalize)
        fit = _best_of(x, n_clusters, gen, n_init, max_iter, tol * _mean_variance(x, chunk), chunk)
    else:
        fit = _minibatch_kmeans(
            embeddings,
            n_clusters,
            gen=gen,
            rng=np.random.default_rng(seed),
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            normalize=normalize,
            chunk=chunk,
            batch_size=batch_size,
        )
    return KMeansResult(
        labels=fit.labels.cpu(),
        centroids=fit.centers.float().cpu(),
        inertia=fit.inertia,
        backend=backend,
        n_iter=fit.n_iter,
    )


def _sklearn_kmeans(
    x: Tensor, k: int, seed: int, n_init: int, max_iter: int, tol: float
) -> KMeansResult:
    from sklearn.cluster import KMeans

    model = KMeans(
        n_clusters=k, init="k-means++", n_init=n_init, max_iter=max_iter, tol=tol, random_state=seed
    ).fit(x.numpy())
    return KMeansResult(
        labels=torch.from_numpy(model.labels_.astype(np.int64)),
        centroids=torch.from_numpy(model.cluster_centers_.astype(np.float32)),
        inertia=float(model.inertia_),
        backend="sklearn",
        n_iter=int(model.n_iter_),
    )


def _load(embeddings: Tensor | np.ndarray, device: torch.device, normalize: bool) -> Tensor:
    """All rows as a float32 tensor on ``device``, checked finite and normalised if asked."""
    if isinstance(embeddings, np.ndarray):
        # A read-only memory map cannot back a tensor; np.require copies only when it must.
        embeddings = torch.from_numpy(np.require(embeddings, np.float32, ["C", "W"]))
    return _prepare(embeddings.to(device=device, dtype=torch.float32), normalize)


def _read(
    data: Tensor | np.ndarray, rows: slice | np.ndarray, device: torch.device, normalize: bool
) -> Tensor:
    """Rows of ``data`` (a tensor or a maybe memory-mapped array) as float32 on ``device``."""
    block = data[rows]
    if isinstance(block, np.ndarray):
        block = torch.from_numpy(np.require(block, np.float32, ["C", "W"]))
    return _prepare(block.to(device=device, dtype=torch.float32), normalize)


def _prepare(x: Tensor, normalize: bool) -> Tensor:
    if not bool(torch.isfinite(x).all()):
        raise DataError(
            "embeddings contain NaN or infinite values; check the training run for divergence"
        )
    return F.normalize(x, dim=1) if normalize else x.contiguous()


def _spans(num_rows: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, num_rows, chunk):
        yield start, min(start + chunk, num_rows)


def _mean_variance(x: Tensor, chunk: int) -> float:
    """Mean over features of the (population) variance, two-pass in float64."""
    n = x.shape[0]
    mean = sum(x[a:b].sum(0, dtype=torch.float64) for a, b in _spans(n, chunk)) / n
    sq = sum((x[a:b].double() - mean).pow(2).sum(0) for a, b in _spans(n, chunk))
    return float((sq / n).mean())


def _row_sq_norms(x: Tensor, chunk: int) -> Tensor:
    return torch.cat([torch.einsum("ij,ij->i", x[a:b], x[a:b]) for a, b in _spans(len(x), chunk)])


def _sq_dists(x: Tensor, x_sq: Tensor, points: Tensor) -> Tensor:
    """Squared distances ``[len(x), len(points)]`` given the squared row norms ``x_sq``."""
    dots = torch.addmm(torch.einsum("ij,ij->i", points, points), x, points.T, alpha=-2)
    return dots.add_(x_sq[:, None]).clamp_min_(0)


def _nearest(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Squared distance to the nearest centre minus ``||x||^2``, and that centre, per row."""
    # ||x||^2 is the same for every centre, so the argmin does not need it.
    return torch.addmm(centers.pow(2).sum(1), x, centers.T, alpha=-2).min(1)


def _block_inertia(x: Tensor, centers: Tensor, labels: Tensor) -> float:
    # From the differences: the expanded form used for the argmin cancels badly far from 0.
    return float((x - centers[labels]).pow(2).sum(dtype=torch.float64))


def _kmeans_plusplus(x: Tensor, x_sq: Tensor, k: int, gen: torch.Generator, chunk: int) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as in scikit-learn).

    Each new centre is the best of ``2 + ln k`` candidates drawn with probability proportional
    to the squared distance to the nearest centre so far.
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    centers = x.new_empty(k, x.shape[1])
    first = torch.randint(n, (1,), generator=gen, device=x.device)
    centers[0] = x[first[0]]
    closest = torch.cat(
        [_sq_dists(x[a:b], x_sq[a:b], centers[:1])[:, 0] for a, b in _spans(n, chunk)]
    )
    for c in range(1, k):
        # Inverse-CDF sampling instead of torch.multinomial, which caps categories at 2^24;
        # float64 so that the running sum stays exact enough over many millions of rows.
        cum = torch.cumsum(closest, 0, dtype=torch.float64)
        draws = torch.rand(trials, generator=gen, dtype=torch.float64, device=x.device) * cum[-1]
        candidates = x[torch.searchsorted(cum, draws, right=True).clamp_(max=n - 1)]
        potential = sum(
            torch.minimum(closest[a:b, None], _sq_dists(x[a:b], x_sq[a:b], candidates)).sum(
                0, dtype=torch.float64
            )
            for a, b in _spans(n, chunk)
        )
        centers[c] = candidates[int(potential.argmin())]
        for a, b in _spans(n, chunk):
            new = _sq_dists(x[a:b], x_sq[a:b], centers[c : c + 1])[:, 0]
            torch.minimum(closest[a:b], new, out=closest[a:b])
    return centers


def _assign(
    x: Tensor, x_sq: Tensor, centers: Tensor, chunk: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest centre of every row, its squared distance, and per-cluster sums and counts."""
    n, k = x.shape[0], centers.shape[0]
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    min_sq = torch.empty(n, dtype=x.dtype, device=x.device)
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    for a, b in _spans(n, chunk):
        block = x[a:b]
        partial, nearest = _nearest(block, centers)
        labels[a:b] = nearest
        torch.add(partial, x_sq[a:b], out=min_sq[a:b])
        # float32 within a block (a float64 copy of every block costs more than the distances),
        # float64 across blocks.
        sums += torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(
            0, nearest, block
        )
    return labels, min_sq, sums, torch.bincount(labels, minlength=k)


def _lloyd(
    x: Tensor, x_sq: Tensor, centers: Tensor, max_iter: int, tol_abs: float, chunk: int
) -> _Fit:
    centers, labels, n_iter = _lloyd_iterations(x, x_sq, centers, max_iter, tol_abs, chunk)
    inertia = sum(
        _block_inertia(x[a:b], centers, labels[a:b]) for a, b in _spans(x.shape[0], chunk)
    )
    return _Fit(centers, labels, inertia, n_iter)


def _lloyd_iterations(
    x: Tensor, x_sq: Tensor, centers: Tensor, max_iter: int, tol_abs: float, chunk: int
) -> tuple[Tensor, Tensor, int]:
    """Final centres, the labels they induce, and the iterations run."""
    previous = None
    for n_iter in range(1, max_iter + 1):
        labels, min_sq, sums, counts = _assign(x, x_sq, centers, chunk)
        if previous is not None and torch.equal(labels, previous):
            # The centres are already the means of this assignment.
            return centers, labels, n_iter
        new_centers = (sums / counts.clamp_min(1)[:, None]).to(x.dtype)
        empty = (counts == 0).nonzero()[:, 0]
        if empty.numel():
            # Restart empty clusters at the rows worst served so far, as scikit-learn does.
            new_centers[empty] = x[min_sq.topk(empty.numel()).indices]
        shift = float((new_centers - centers).pow(2).sum())
        centers, previous = new_centers, labels
        if shift <= tol_abs:
            return centers, _assign(x, x_sq, centers, chunk)[0], n_iter
    return centers, _assign(x, x_sq, centers, chunk)[0], max_iter


def _best_of(
    x: Tensor,
    k: int,
    gen: torch.Generator,
    n_init: int,
    max_iter: int,
    tol_abs: float,
    chunk: int,
) -> _Fit:
    x_sq = _row_sq_norms(x, chunk)
    best = None
    for _ in range(n_init):
        centers = _kmeans_plusplus(x, x_sq, k, gen, chunk)
        fit = _lloyd(x, x_sq, centers, max_iter, tol_abs, chunk)
        if best is None or fit.inertia < best.inertia:
            best = fit
    return best


def _minibatch_kmeans(
    data: Tensor | np.ndarray,
    k: int,
    *,
    gen: torch.Generator,
    rng: np.random.Generator,
    n_init: int,
    max_iter: int,
    tol: float,
    normalize: bool,
    chunk: int,
    batch_size: int,
) -> _Fit:
    """Mini-batch k-means (Sculley 2010) over ``data`` read block by block.

    Seeds with full k-means on a random sample, then updates every centre towards the running
    mean of the rows ever assigned to it (per-centre learning rate ``1 / count``). A final pass
    assigns every row, ``chunk`` rows at a time.
    """
    device, n = gen.device, int(data.shape[0])
    sample_rows = np.sort(
        rng.choice(n, min(n, max(_SAMPLE_ROWS_PER_CLUSTER * k, 3 * batch_size)), replace=False)
    )
    sample = _read(data, sample_rows, device, normalize)
    tol_abs = tol * _mean_variance(sample, chunk)
    centers = _best_of(sample, k, gen, n_init, max_iter, tol_abs, chunk).centers.double()
    passes = _minibatch_passes(
        data,
        centers,
        gen=gen,
        rng=rng,
        max_iter=max_iter,
        tol_abs=tol_abs,
        normalize=normalize,
        batch_size=batch_size,
    )
    centers = centers.float()
    labels = torch.empty(n, dtype=torch.long)
    inertia = 0.0
    for a, b in _spans(n, chunk):
        block = _read(data, slice(a, b), device, normalize)
        nearest = _nearest(block, centers)[1]
        labels[a:b] = nearest.cpu()
        inertia += _block_inertia(block, centers, nearest)
    return _Fit(centers, labels, inertia, passes)


def _minibatch_passes(
    data: Tensor | np.ndarray,
    centers: Tensor,
    *,
    gen: torch.Generator,
    rng: np.random.Generator,
    max_iter: int,
    tol_abs: float,
    normalize: bool,
    batch_size: int,
) -> int:
    """Refine the float64 ``centers`` in place, pass after pass; returns the passes made.

    Each pass visits blocks of contiguous rows (cheap to read from a memory map) in random order
    and shuffles the rows of a block into mini-batches. Blocks are sized by ``batch_size`` alone,
    so the result does not depend on the distance chunk size.
    """
    device, k, n = centers.device, centers.shape[0], int(data.shape[0])
    counts = torch.zeros(k, dtype=torch.float64, device=device)
    block_rows = _BATCHES_PER_BLOCK * batch_size
    starts = np.arange(0, n, block_rows)
    for passes in range(1, max_iter + 1):
        before = centers.clone()
        for start in starts[rng.permutation(starts.size)]:
            block = _read(data, slice(start, min(start + block_rows, n)), device, normalize)
            order = torch.randperm(block.shape[0], generator=gen, device=device)
            for a, b in _spans(block.shape[0], batch_size):
                batch = block[order[a:b]]
                nearest = _nearest(batch, centers.float())[1]
                batch_counts = torch.bincount(nearest, minlength=k).double()
                batch_sums = torch.zeros_like(centers).index_add_(0, nearest, batch.double())
                counts += batch_counts
                # Centres without rows so far have zero sums and counts and stay put.
                centers += (batch_sums - batch_counts[:, None] * centers) / counts.clamp_min(1)[
                    :, None
                ]
        if float((centers - before).pow(2).sum()) <= tol_abs:
            return passes
    return max_iter
