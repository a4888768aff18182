"""k-means on node embeddings: scikit-learn, full-batch torch and mini-batch torch backends.

The torch backend runs all restarts (and, through :func:`kmeans_runs`, several runs) together:
their ``R`` sets of ``k`` centres form one ``[R * k, D]`` matrix, so one matmul per block of
rows gives every restart's distances, at every k-means++ step and Lloyd iteration. Beyond a
centred copy of the embeddings it keeps distance blocks of about :data:`_BLOCK_ELEMENTS` and
``N x R`` labels, ``R`` bounded so that these stay near the same size. The mini-batch backend
reads the embeddings block by block, so they may be a memory-mapped ``.npy`` larger than RAM.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from agc_cli.errors import DataError, UsageError

BACKENDS = ("auto", "sklearn", "torch", "minibatch")
# On CPU the batched torch backend is faster than scikit-learn's Lloyd (bench_kmeans.py on 2
# cores other jobs kept busy; DGI embeddings of Cora, 2,708 x 512, k = 7, 10 restarts: 0.47 s
# of CPU against 0.84 s with 1 thread, 3.7 s against 6.9 s with 2; 9,600 x 256 blobs, k = 10:
# 1.8 s against 8.5 s, and 3.4 s against 21.8 s next to 2 busy processes), but every iteration
# of every restart is a full pass: beyond this size mini-batch wins.
TORCH_CPU_MAX_NODES = 1_000_000
# On an accelerator full passes are cheap; from here on the embeddings may not fit in device
# memory, and mini-batch reads them block by block.
MINIBATCH_MIN_NODES = 10_000_000
# Elements in one distance or feature block (64 MiB of float32), and in the per-row, per-restart
# state of the torch backend (labels and distances), which bounds the restarts run together.
_BLOCK_ELEMENTS = 1 << 24
# Moved rows are added into the cluster sums one by one while they are fewer than the distance
# matmul's columns times rows over this (a scattered row costs about as much as this many
# multiply-adds of the matmul).
_SPARSE_GAIN = 16
# Restarts whose inertias differ by less than this (relative) are taken to be the same minimum.
_SAME_MINIMUM = 1e-6
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
        n_iter: Lloyd iterations of the best restart (epochs for ``"minibatch"``).
        seconds: time spent on this run; runs batched together share their time equally.
    """

    labels: Tensor
    centroids: Tensor
    inertia: float
    backend: str
    n_iter: int
    seconds: float = 0.0


class _Fit(NamedTuple):
    centers: Tensor
    labels: Tensor
    inertia: float
    n_iter: int


def choose_backend(num_nodes: int, device: torch.device | str = "cpu") -> str:
    """The backend ``backend="auto"`` runs for ``num_nodes`` rows on ``device``.

    CPU: ``"torch"`` up to :data:`TORCH_CPU_MAX_NODES` rows, then ``"minibatch"``. Accelerators:
    ``"torch"`` below :data:`MINIBATCH_MIN_NODES` rows, then ``"minibatch"``.
    """
    if torch.device(device).type == "cpu":
        return "torch" if num_nodes <= TORCH_CPU_MAX_NODES else "minibatch"
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
        n_init: seedings tried; the restart with the lowest inertia wins. The torch backend
            runs them together, one matmul per block serving every restart.
        max_iter: Lloyd iterations per restart (passes over the data for ``"minibatch"``).
        tol: a restart stops once the squared centroid shift is below ``tol`` times the mean
            feature variance (scikit-learn's rule), or (torch backend) once its inertia fell
            by less than ``tol`` relative, or no label changed.
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
    return next(
        kmeans_runs(
            embeddings,
            n_clusters,
            seeds=[seed],
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            backend=backend,
            normalize=normalize,
            device=device,
            chunk_size=chunk_size,
            batch_size=batch_size,
        )
    )


def kmeans_runs(
    embeddings: Tensor | np.ndarray,
    n_clusters: int,
    *,
    seeds: Sequence[int],
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    backend: str = "auto",
    normalize: bool = False,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    batch_size: int = 32_768,
) -> Iterator[KMeansResult]:
    """Independent :func:`kmeans` runs, one per seed, yielded in the order of ``seeds``.

    Each result is the one ``kmeans(..., seed=s)`` gives. The torch backend loads and centres
    the embeddings once and runs the restarts of as many runs together as its per-row state
    allows (:data:`_BLOCK_ELEMENTS` row-restarts): on small graphs all of them, in wider and so
    faster matmuls; on large ones one run at a time, each yielded as it ends. The arguments are
    those of :func:`kmeans` and are checked here, before the first result is asked for.
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
    fit = dict(n_init=n_init, max_iter=max_iter, tol=tol)
    if backend == "torch":
        group = max(1, _BLOCK_ELEMENTS // (num_rows * n_init))
        return _torch_runs(
            embeddings, n_clusters, list(seeds), group, device, normalize, chunk_size, **fit
        )
    if backend == "sklearn":
        return _timed(
            lambda seed: _sklearn_kmeans(embeddings, n_clusters, seed, normalize, **fit), seeds
        )
    chunk = chunk_size or _default_chunk(n_init, n_clusters, dim)
    return _timed(
        lambda seed: _result(
            _minibatch_kmeans(
                embeddings,
                n_clusters,
                seed=seed,
                device=device,
                normalize=normalize,
                chunk=chunk,
                batch_size=batch_size,
                **fit,
            ),
            "minibatch",
        ),
        seeds,
    )


def _timed(run: Callable[[int], KMeansResult], seeds: Sequence[int]) -> Iterator[KMeansResult]:
    for seed in seeds:
        start = time.perf_counter()
        result = run(seed)
        result.seconds = time.perf_counter() - start
        yield result


def _default_chunk(restarts: int, k: int, dim: int) -> int:
    """Rows per block: distances to every restart's centres (or seeding candidates) or the
    features of the block, whichever is wider, near :data:`_BLOCK_ELEMENTS` elements."""
    width = restarts * max(k, 2 + int(math.log(k)))
    return max(256, _BLOCK_ELEMENTS // max(width, dim))


def _torch_runs(
    embeddings: Tensor | np.ndarray,
    k: int,
    seeds: list[int],
    group: int,
    device: torch.device,
    normalize: bool,
    chunk_size: int | None,
    *,
    n_init: int,
    max_iter: int,
    tol: float,
) -> Iterator[KMeansResult]:
    """The torch backend's runs, ``group`` runs batched together at a time."""
    start = time.perf_counter()
    x = _load(embeddings, device, normalize)
    chunk = chunk_size or _default_chunk(min(group, len(seeds)) * n_init, k, x.shape[1])
    data = _Centred.of(x, chunk)
    del x
    for first in range(0, len(seeds), group):
        batch = seeds[first : first + group]
        results = [_result(fit, "torch") for fit in _best_of(data, k, batch, n_init, max_iter, tol)]
        seconds, start = time.perf_counter() - start, time.perf_counter()
        for result in results:
            result.seconds = seconds / len(batch)
            yield result


def _result(fit: _Fit, backend: str) -> KMeansResult:
    return KMeansResult(
        labels=fit.labels.long().cpu(),
        centroids=fit.centers.float().cpu(),
        inertia=fit.inertia,
        backend=backend,
        n_iter=fit.n_iter,
    )


def _sklearn_kmeans(
    embeddings: Tensor | np.ndarray,
    k: int,
    seed: int,
    normalize: bool,
    *,
    n_init: int,
    max_iter: int,
    tol: float,
) -> KMeansResult:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = _load(embeddings, torch.device("cpu"), normalize)
    model = KMeans(
        n_clusters=k, init="k-means++", n_init=n_init, max_iter=max_iter, tol=tol, random_state=seed
    )
    # Its OpenMP loop would otherwise start one thread per core the host has, however many
    # this process may use (torch's count is set to those by configure_threads).
    with threadpool_limits(torch.get_num_threads()):
        model.fit(x.numpy())
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


def _sq_dists(x: Tensor, x_sq: Tensor, points: Tensor, points_sq: Tensor) -> Tensor:
    """Squared distances ``[len(x), len(points)]`` given both sides' squared row norms."""
    return torch.addmm(points_sq, x, points.T, alpha=-2).add_(x_sq[:, None]).clamp_min_(0)


def _nearest(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Squared distance to the nearest centre minus ``||x||^2``, and that centre, per row."""
    # ||x||^2 is the same for every centre, so the argmin does not need it.
    return torch.addmm(centers.pow(2).sum(1), x, centers.T, alpha=-2).min(1)


def _block_inertia(x: Tensor, centers: Tensor, labels: Tensor) -> float:
    # From the differences: the expanded form used for the argmin cancels badly far from 0.
    return float((x - centers[labels]).pow(2).sum(dtype=torch.float64))


def _restart_generators(seed: int, n_init: int, device: torch.device) -> list[torch.Generator]:
    """One generator per restart, a pure function of ``(seed, restart)``.

    Restart ``r`` is the same whatever ``n_init`` is, so more restarts can only lower the
    inertia; and runs with seeds ``s`` and ``s + 1`` share no restart (``seed + r`` would).
    """
    gens = []
    for r in range(n_init):
        state = int(np.random.SeedSequence([seed, r]).generate_state(1, np.uint64)[0])
        gens.append(torch.Generator(device=device).manual_seed(state))
    return gens


class _Centred(NamedTuple):
    """The rows minus their mean, with their squared norms.

    The expanded distance ``||x||^2 - 2 x.c + ||c||^2`` loses precision when the data sit far
    from the origin, so the torch backend works on a centred copy (as scikit-learn does).
    """

    x: Tensor
    mean: Tensor  # [D], added back to the centres found
    sq: Tensor  # [N], squared norms of the centred rows
    chunk: int

    @classmethod
    def of(cls, x: Tensor, chunk: int) -> _Centred:
        total = sum(x[a:b].sum(0, dtype=torch.float64) for a, b in _spans(len(x), chunk))
        mean = (total / len(x)).to(x.dtype)
        centred = x - mean
        sq = torch.cat(
            [torch.einsum("ij,ij->i", centred[a:b], centred[a:b]) for a, b in _spans(len(x), chunk)]
        )
        return cls(centred, mean, sq, chunk)

    @property
    def variance(self) -> float:
        """Mean over features of the (population) variance."""
        return float(self.sq.sum(dtype=torch.float64)) / self.x.numel()

    def blocks(self) -> Iterator[tuple[int, int, Tensor]]:
        for a, b in _spans(self.x.shape[0], self.chunk):
            yield a, b, self.x[a:b]

    def rows(self, index: Tensor) -> Tensor:
        return self.x[index]


def _kmeans_plusplus(data: _Centred, k: int, gens: list[torch.Generator]) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as in scikit-learn), one seeding
    per generator, all restarts advanced together: ``[R, k, D]`` centred centres.

    Each new centre is the best of ``2 + ln k`` candidates drawn with probability proportional
    to the squared distance to the nearest centre so far; one matmul per block scores the
    candidates of every restart.
    """
    n, device, restarts = data.x.shape[0], data.x.device, len(gens)
    trials = 2 + int(math.log(k))
    # Keep the scored distances to find the new closest ones without a second matmul, unless
    # they would exceed a block.
    keep = n * restarts * trials <= _BLOCK_ELEMENTS
    everyone = torch.arange(restarts, device=device)
    first = torch.cat([torch.randint(n, (1,), generator=g, device=device) for g in gens])
    centers = data.x.new_empty(restarts, k, data.x.shape[1])
    centers[:, 0] = data.rows(first)
    closest = _distances_to(data, centers[:, 0])  # [R, N]
    for c in range(1, k):
        # Inverse-CDF sampling instead of torch.multinomial, which caps categories at 2^24;
        # float64 so that the running sum stays exact enough over many millions of rows.
        cum = torch.cumsum(closest, 1, dtype=torch.float64)
        draws = torch.stack(
            [torch.rand(trials, generator=g, dtype=torch.float64, device=device) for g in gens]
        )
        picks = torch.searchsorted(cum, draws * cum[:, -1:], right=True).clamp_(max=n - 1)
        candidates = data.rows(picks.reshape(-1))  # [R * trials, D]
        cand_sq = torch.einsum("ij,ij->i", candidates, candidates)
        # sum_i min(closest_i, ||x_i||^2 + p_i) = sum_i ||x_i||^2 + sum_i min(closest_i -
        # ||x_i||^2, p_i) with p = ||c||^2 - 2 x.c; the first sum is the same for every
        # candidate, so scoring takes two passes over each block's distances.
        potential = torch.zeros(restarts, trials, dtype=torch.float64, device=device)
        kept = []
        for a, b, block in data.blocks():
            dist = _distances_block(block, candidates, cand_sq, restarts)
            below = (closest[:, a:b] - data.sq[a:b]).T[:, :, None]
            potential += torch.minimum(dist, below, out=dist).sum(0)
            if keep:
                kept.append(dist)
        best = potential.argmin(1)
        centers[:, c] = candidates.view(restarts, trials, -1)[everyone, best]
        if keep:
            # The minimum with the chosen candidate, kept from scoring, is the new closest.
            chosen = torch.cat(
                [dist.gather(2, best.expand(len(dist), -1)[:, :, None])[:, :, 0] for dist in kept]
            )  # [N, R]
            closest = chosen.add_(data.sq[:, None]).clamp_min_(0).T.contiguous()
        else:
            closest = torch.minimum(closest, _distances_to(data, centers[:, c]))
    return centers


def _distances_to(data: _Centred, points: Tensor) -> Tensor:
    """Squared distances ``[P, N]`` of every row to each of ``points`` (centred)."""
    points_sq = torch.einsum("ij,ij->i", points, points)
    return torch.cat(
        [_sq_dists(block, data.sq[a:b], points, points_sq) for a, b, block in data.blocks()]
    ).T.contiguous()


class _Assignment(NamedTuple):
    labels: Tensor  # int32 [N, A]: the nearest centre of every row for each restart
    inertia: Tensor  # float64 [A], expanded form (on centred rows)


def _distances_block(block: Tensor, flat: Tensor, flat_sq: Tensor, restarts: int) -> Tensor:
    """``||c||^2 - 2 x.c`` of the rows of ``block`` to all ``[A * k, D]`` centres ``flat``, as
    ``[rows, A, k]`` (``||x||^2`` is the same for every centre, so the argmin needs none)."""
    return torch.addmm(flat_sq, block, flat.T, alpha=-2).view(block.shape[0], restarts, -1)


def _nearest_all(data: _Centred, centers: Tensor) -> _Assignment:
    """Labels and inertia of every restart's assignment to ``centers`` ``[A, k, D]``."""
    restarts, k, dim = centers.shape
    flat = centers.reshape(restarts * k, dim)
    flat_sq = torch.einsum("ij,ij->i", flat, flat)
    labels = torch.empty(data.x.shape[0], restarts, dtype=torch.int32, device=flat.device)
    inertia = torch.zeros(restarts, dtype=torch.float64, device=flat.device)
    for a, b, block in data.blocks():
        partial, nearest = _distances_block(block, flat, flat_sq, restarts).min(2)
        inertia += partial.sum(0, dtype=torch.float64)
        labels[a:b] = nearest
    return _Assignment(labels, inertia + data.sq.sum(dtype=torch.float64))


class _Sums(NamedTuple):
    """Per-cluster sums and counts of the rows, kept up to date with the labels.

    Each assignment changes them by what moved: for a block where few labels changed, an
    ``index_add_`` of the moved rows (late Lloyd iterations move few rows, so they cost about
    one matmul, the distances); otherwise one matmul of the block with ``onehot(new) -
    onehot(old)``.
    """

    labels: Tensor  # int32 [N, A], -1 before the first assignment
    sums: Tensor  # float64 [A * k, D]
    counts: Tensor  # float64 [A * k]

    @classmethod
    def empty(cls, rows: int, restarts: int, k: int, dim: int, device: torch.device) -> _Sums:
        return cls(
            torch.full((rows, restarts), -1, dtype=torch.int32, device=device),
            torch.zeros(restarts * k, dim, dtype=torch.float64, device=device),
            torch.zeros(restarts * k, dtype=torch.float64, device=device),
        )

    def keep(self, index: Tensor, k: int) -> _Sums:
        """The state of the restarts at ``index`` only."""
        restarts, dim = self.labels.shape[1], self.sums.shape[1]
        return _Sums(
            self.labels.index_select(1, index),
            self.sums.view(restarts, k, dim).index_select(0, index).view(-1, dim),
            self.counts.view(restarts, k).index_select(0, index).view(-1),
        )

    def update(self, data: _Centred, centers: Tensor) -> tuple[Tensor, Tensor]:
        """Assign every row to its nearest of ``centers`` ``[A, k, D]``; returns the rows whose
        label changed (int64 ``[A]``) and the inertia of the assignment (float64 ``[A]``)."""
        restarts, k, dim = centers.shape
        flat = centers.reshape(restarts * k, dim)
        flat_sq = torch.einsum("ij,ij->i", flat, flat)
        offsets = torch.arange(restarts, device=flat.device) * k
        changed = torch.zeros(restarts, dtype=torch.long, device=flat.device)
        inertia = torch.zeros(restarts, dtype=torch.float64, device=flat.device)
        for a, b, block in data.blocks():
            dist = _distances_block(block, flat, flat_sq, restarts)
            partial, nearest = dist.min(2)
            inertia += partial.sum(0, dtype=torch.float64)
            old = self.labels[a:b]
            moved = nearest != old
            per_restart = moved.sum(0)
            changed += per_restart
            total = int(per_restart.sum())
            if 0 < total <= b - a and _SPARSE_GAIN * total <= (b - a) * restarts * k:
                rows, cols = moved.nonzero(as_tuple=True)
                moved_rows = block[rows].double()
                into = nearest[rows, cols] + offsets[cols]
                self.sums.index_add_(0, into, moved_rows)
                self.counts.index_add_(0, into, moved_rows.new_ones(len(into)))
                was = old[rows, cols].long()
                left = was >= 0
                out_of = was[left] + offsets[cols[left]]
                self.sums.index_add_(0, out_of, moved_rows[left], alpha=-1)
                self.counts.index_add_(0, out_of, moved_rows.new_ones(len(out_of)), alpha=-1)
            elif total:
                # float32 within a block (the products of a BLAS call), float64 across.
                delta = dist.zero_().scatter_(2, nearest[:, :, None], 1.0)
                left = old >= 0
                if bool(left.any()):
                    delta.scatter_add_(
                        2, old.long().clamp_min(0)[:, :, None], -left[:, :, None].to(delta.dtype)
                    )
                delta = delta.view(b - a, restarts * k)
                self.sums.add_(delta.T @ block)
                self.counts.add_(delta.sum(0))
            old.copy_(nearest)
        return changed, inertia + data.sq.sum(dtype=torch.float64)


def _worst_served(data: _Centred, centers: Tensor, count: int) -> Tensor:
    """The ``count`` rows farthest from their nearest of ``centers`` ``[k, D]``."""
    centers_sq = torch.einsum("ij,ij->i", centers, centers)
    farthest = torch.cat(
        [
            _sq_dists(block, data.sq[a:b], centers, centers_sq).min(1).values
            for a, b, block in data.blocks()
        ]
    )
    return farthest.topk(count).indices


def _lloyd(
    data: _Centred, centers: Tensor, max_iter: int, tol_abs: float, tol: float
) -> tuple[Tensor, list[int]]:
    """Lloyd iterations of ``R`` restarts together; returns their centres and iterations.

    A restart stops when no label changed, when its centres moved by at most ``tol_abs``
    (squared, scikit-learn's rule) or when its inertia fell by at most ``tol`` relative; the
    rest go on in a smaller batch.
    """
    centers = centers.clone()
    restarts, k, dim = centers.shape
    n_iter = [max_iter] * restarts
    active = list(range(restarts))
    state = _Sums.empty(data.x.shape[0], restarts, k, dim, centers.device)
    previous = torch.full((restarts,), math.inf, dtype=torch.float64)
    for iteration in range(1, max_iter + 1):
        changed, inertia = state.update(data, centers[active])
        counts = state.counts.view(len(active), k)
        new = (state.sums.view(len(active), k, dim) / counts.clamp_min(1)[:, :, None]).to(
            centers.dtype
        )
        for j in (counts == 0).any(1).nonzero()[:, 0].tolist():
            # Restart empty clusters at the rows worst served so far, as scikit-learn does.
            empty = (counts[j] == 0).nonzero()[:, 0]
            new[j, empty] = data.rows(_worst_served(data, centers[active[j]], empty.numel()))
        shift = (new - centers[active]).pow(2).sum((1, 2)).cpu()
        inertia = inertia.cpu()
        unchanged = (changed == 0).cpu()
        keep = []
        for j, r in enumerate(active):
            if not bool(unchanged[j]):
                centers[r] = new[j]
            # Unchanged labels: the centres already are the means of this assignment.
            if (
                bool(unchanged[j])
                or shift[j] <= tol_abs
                or previous[r] - inertia[j] <= tol * inertia[j]
            ):
                n_iter[r] = iteration
            else:
                keep.append(j)
            previous[r] = inertia[j]
        if not keep:
            break
        if len(keep) < len(active):
            state = state.keep(torch.tensor(keep, device=centers.device), k)
            active = [active[j] for j in keep]
    return centers, n_iter


def _best_of(
    data: _Centred, k: int, seeds: list[int], n_init: int, max_iter: int, tol: float
) -> list[_Fit]:
    """For each seed, the best of its ``n_init`` k-means++ / Lloyd restarts; all restarts of
    all seeds run together. Centres are in the original (uncentred) space."""
    gens = [g for seed in seeds for g in _restart_generators(seed, n_init, data.x.device)]
    centers = _kmeans_plusplus(data, k, gens)
    centers, n_iter = _lloyd(data, centers, max_iter, tol * data.variance, tol)
    # One more assignment of every restart to its final centres, to compare them fairly.
    labels, inertia = _nearest_all(data, centers)
    inertia = inertia.view(len(seeds), n_init)
    # Restarts within float32 rounding of the lowest inertia found the same minimum (often the
    # same partition, numbered apart): the first of them wins, so that the chunk size or the
    # thread count, which change the last bits, do not change the labels.
    near_best = inertia <= inertia.min(1, keepdim=True).values * (1 + _SAME_MINIMUM)
    fits = []
    for run, restart in enumerate(near_best.int().argmax(1).tolist()):
        best = run * n_init + restart
        run_centers, run_labels = centers[best], labels[:, best].long()
        exact = sum(
            _block_inertia(block, run_centers, run_labels[a:b]) for a, b, block in data.blocks()
        )
        fits.append(_Fit(run_centers + data.mean, run_labels, exact, n_iter[best]))
    return fits


def _minibatch_kmeans(
    data: Tensor | np.ndarray,
    k: int,
    *,
    seed: int,
    device: torch.device,
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
    gen = torch.Generator(device=device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = int(data.shape[0])
    sample_rows = np.sort(
        rng.choice(n, min(n, max(_SAMPLE_ROWS_PER_CLUSTER * k, 3 * batch_size)), replace=False)
    )
    sample = _read(data, sample_rows, device, normalize)
    centred = _Centred.of(sample, chunk)
    tol_abs = tol * centred.variance
    centers = _best_of(centred, k, [seed], n_init, max_iter, tol)[0].centers.double()
    del centred
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
