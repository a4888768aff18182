"""Clustering and metrics over arrays larger than RAM, read block by block.

Every function takes arrays that may be read-only memory maps of ``.npy`` files (embeddings
``[N, D]``, CSC ``colptr``/``row``, labels ``y``): they are read in blocks with plain positioned
reads (:func:`agc_cli.utils.npy.read_rows`), so the resident set stays about one block however
large the file. Only the cluster of every node (``N`` int32) is held whole, because the
structure metrics look up the cluster of each edge's source at random.

* :func:`fit_sample`: mini-batch k-means (k-means++ seeding) fitted on a uniform sample of rows.
* :func:`assign_blocks`: one pass assigning every row to its nearest centroid, the labels
  written to an ``.npy`` file as they are computed.
* :func:`streamed_label_metrics`, :func:`streamed_structure_metrics`: the numbers of
  :func:`~agc_cli.cluster.metrics.label_metrics` and
  :func:`~agc_cli.cluster.metrics.structure_metrics`, from blocks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from agc_cli.cluster.kmeans import KMeansResult, kmeans
from agc_cli.cluster.metrics import DEFAULT_CHUNK_EDGES
from agc_cli.errors import DataError, UsageError
from agc_cli.utils.npy import NpyWriter, block_rows, iter_blocks, read_rows

# Rows k-means is fitted on by default: thousands per cluster for the k of the benchmarks, and
# a fixed cost (seconds) however many nodes are assigned afterwards.
SAMPLE_ROWS = 100_000
# Clusters fitted from a sample get at least this many sampled rows each.
SAMPLE_ROWS_PER_CLUSTER = 1024
# Bytes of one block of the assignment pass (rows or distances): each block has about four
# temporaries of its size, so this bounds the pass's memory near 100 MB.
ASSIGN_BLOCK_BYTES = 16 << 20

Advance = Callable[[int], None]


def _no_progress(done: int) -> None:
    pass


def sample_size(num_rows: int, n_clusters: int, wanted: int | None = None) -> int:
    """Rows :func:`fit_sample` fits on: ``wanted``, else :data:`SAMPLE_ROWS` (at least
    :data:`SAMPLE_ROWS_PER_CLUSTER` per cluster), never more than ``num_rows``."""
    if wanted is not None and wanted < n_clusters:
        raise UsageError(f"sample_rows={wanted} must be at least n_clusters ({n_clusters})")
    size = wanted if wanted is not None else max(SAMPLE_ROWS, SAMPLE_ROWS_PER_CLUSTER * n_clusters)
    return min(size, num_rows)


def sample_rows(data: Any, size: int, seed: int) -> np.ndarray:
    """``size`` distinct rows of ``data`` drawn uniformly (given ``seed``), in file order, as
    float32 ``[size, D]``.

    The rows are read block by block in one forward pass, skipping blocks without a sampled row:
    sequential reads, and one block resident at a time besides the sample.
    """
    num_rows = int(data.shape[0])
    ids = np.sort(np.random.default_rng(seed).choice(num_rows, size, replace=False))
    out = np.empty((size, *data.shape[1:]), dtype=np.float32)
    step = block_rows(data)
    # Sampled rows of each block: ids[bounds[b]:bounds[b + 1]] lie in rows [b*step, (b+1)*step).
    bounds = np.searchsorted(ids, np.arange(0, num_rows + step, step))
    for block in np.flatnonzero(np.diff(bounds)):
        first, last = bounds[block], bounds[block + 1]
        start = int(block) * step
        rows = read_rows(data, start, min(start + step, num_rows))
        out[first:last] = rows[ids[first:last] - start]
    return out


def fit_sample(
    data: Any,
    n_clusters: int,
    *,
    seed: int,
    sample: int | None = None,
    n_init: int = 10,
    max_iter: int = 300,
    backend: str = "minibatch",
    normalize: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[KMeansResult, int]:
    """k-means fitted on a uniform sample of the rows of ``data`` (``[N, D]``, any size).

    Args:
        sample: rows to fit on (default :func:`sample_size`).
        backend: the :func:`~agc_cli.cluster.kmeans.kmeans` backend run on the sample;
            ``"minibatch"`` (the default) seeds with k-means++ and refines with mini-batches.

    Returns:
        The fit on the sample (its labels are the sample's) and the sample's size.
    """
    num_rows = int(data.shape[0])
    if not 1 <= n_clusters <= num_rows:
        raise UsageError(
            f"n_clusters={n_clusters} must be between 1 and the number of rows ({num_rows})"
        )
    size = sample_size(num_rows, n_clusters, sample)
    rows = torch.from_numpy(sample_rows(data, size, seed))
    fit = kmeans(
        rows, n_clusters, seed=seed, n_init=n_init, max_iter=max_iter, backend=backend,
        normalize=normalize, device=device,
    )  # fmt: skip
    return fit, size


@dataclass
class Assignment:
    """Outcome of :func:`assign_blocks`.

    Attributes:
        path: the ``.npy`` file of labels (int32 ``[N]``, the cluster of row ``i`` at ``i``).
        inertia: sum of squared distances of the rows to their centroids.
        counts: rows per cluster, int64 ``[k]``.
    """

    path: Path
    inertia: float
    counts: np.ndarray


def assign_blocks(
    data: Any,
    centroids: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    normalize: bool = False,
    rows: int | None = None,
    device: torch.device | str = "cpu",
    progress: Advance | None = None,
) -> Assignment:
    """Assign every row of ``data`` to its nearest centroid in one pass of blocks, writing the
    labels to ``path`` (atomically: the file appears complete or not at all).

    The distances are those of :func:`~agc_cli.cluster.kmeans.kmeans` (``||c||^2 - 2 x.c``, the
    first centroid on ties), so a fit's own labels are reproduced from its centroids.

    Args:
        data: ``[N, D]`` float rows (a memory-mapped ``.npy`` is read without mapping).
        centroids: ``[k, D]``, in the normalised space when ``normalize``.
        normalize: L2-normalise every row first (as the fit did).
        rows: rows per block (default: :data:`ASSIGN_BLOCK_BYTES` of rows or of distances).
        progress: called with the rows of each block done.

    Raises:
        DataError: a row holding NaN or inf (naming it), or centroids of another width.
    """
    centers = torch.as_tensor(centroids).to(device=device, dtype=torch.float32)
    num_rows, k = int(data.shape[0]), int(centers.shape[0])
    if data.ndim != 2 or centers.ndim != 2 or centers.shape[1] != data.shape[1]:
        raise DataError(
            f"embeddings {tuple(data.shape)} and centroids {tuple(centers.shape)} disagree; "
            "expected [N, D] and [k, D]"
        )
    center_sq = centers.pow(2).sum(1)
    step = rows or max(1, ASSIGN_BLOCK_BYTES // (4 * max(k, int(data.shape[1]), 1)))
    counts = torch.zeros(k, dtype=torch.long, device=device)
    inertia = torch.zeros((), dtype=torch.float64, device=device)
    label_dtype = np.int32 if k <= np.iinfo(np.int32).max else np.int64
    advance = progress or _no_progress
    with NpyWriter(path, (num_rows,), label_dtype) as out:
        for start, block in iter_blocks(data, step):
            x = _rows_tensor(block, start, device, normalize)
            # As kmeans' nearest-centre step: ||x||^2 is the same for every centre.
            nearest = torch.addmm(center_sq, x, centers.T, alpha=-2).min(1).indices
            # From the differences: the expanded form cancels badly far from 0.
            inertia += (x - centers[nearest]).pow_(2).sum(dtype=torch.float64)
            counts += torch.bincount(nearest, minlength=k)
            out.write(nearest.cpu().numpy())
            advance(x.shape[0])
        labels = out.commit()
    return Assignment(labels, float(inertia), counts.cpu().numpy())


def _rows_tensor(block: np.ndarray, start: int, device: torch.device | str, normalize: bool):
    x = torch.from_numpy(np.require(block, np.float32, ["C", "W"])).to(device)
    finite = torch.isfinite(x).all(1)
    if not bool(finite.all()):
        bad = start + int((~finite).nonzero()[0, 0])
        raise DataError(
            f"embeddings row {bad} holds NaN or inf; check the training run for divergence"
        )
    return F.normalize(x, dim=1) if normalize else x


def streamed_label_metrics(pred: Any, y: Any, rows: int | None = None) -> dict[str, float]:
    """:func:`~agc_cli.cluster.metrics.label_metrics` of ``pred`` on the labeled nodes
    (``y >= 0``), from the cluster x class contingency table counted over blocks of ``y``;
    empty when no node is labeled.

    Every one of those metrics is a function of that table, computed here as scikit-learn and
    :mod:`agc_cli.cluster.metrics` compute it from the labels, so the numbers agree; memory is
    the table (clusters x classes), not a copy of every labeled node's labels, and time is one
    ``bincount`` per block instead of scikit-learn's sorts of all of them.
    """
    pred_np = _resident(pred)
    if int(y.shape[0]) != pred_np.size:
        raise DataError(f"pred has {pred_np.size} nodes but y has {int(y.shape[0])}")
    if pred_np.size and pred_np.min() < 0:
        raise DataError("cluster ids must be non-negative")
    k = int(pred_np.max()) + 1 if pred_np.size else 0
    table = np.zeros((k, 0), dtype=np.int64)
    for start, block in iter_blocks(y, rows):
        labeled = np.flatnonzero(block >= 0)
        if not labeled.size:
            continue
        classes = np.asarray(block[labeled], dtype=np.int64)
        width = max(table.shape[1], int(classes.max()) + 1)
        if width > table.shape[1]:
            table = np.pad(table, ((0, 0), (0, width - table.shape[1])))
        cells = pred_np[start + labeled].astype(np.int64) * width + classes
        table += np.bincount(cells, minlength=k * width).reshape(k, width)
    # Only the clusters and classes that occur, as np.unique over the labels would give them.
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    if table.size == 0:
        return {}
    return _table_metrics(table)


def _table_metrics(table: np.ndarray) -> dict[str, float]:
    """The metrics of :func:`~agc_cli.cluster.metrics.label_metrics` from the int64
    ``[clusters, classes]`` contingency table (no empty row or column), step for step as
    scikit-learn 1.x and :mod:`agc_cli.cluster.metrics` compute them from the labels."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import csr_matrix
    from sklearn.metrics import mutual_info_score

    clusters, classes = table.shape
    by_class = csr_matrix(table.T)  # scikit-learn's orientation: classes x clusters
    mi = mutual_info_score(None, None, contingency=by_class)
    h_true, h_pred = _entropy(table.sum(0)), _entropy(table.sum(1))
    if clusters == classes == 1:
        nmi = 1.0
    else:
        nmi = 0.0 if mi == 0 else float(mi / np.mean([h_true, h_pred]))
    # scikit-learn's pair confusion matrix: pairs of nodes split or joined by the classes (rows)
    # and the clusters (columns); Python integers, as scikit-learn converts them.
    n = int(table.sum())
    squares = int((by_class.data**2).sum())
    tp = squares - n
    fp = int(by_class.dot(table.sum(1)).sum()) - squares
    fn = int(by_class.transpose().dot(table.sum(0)).sum()) - squares
    tn = n * n - fp - fn - squares
    if fn == 0 and fp == 0:
        ari = 1.0
    else:
        ari = 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    matched_rows, matched_cols = linear_sum_assignment(table, maximize=True)
    true_pos = np.zeros(classes)
    predicted = np.zeros(classes)
    true_pos[matched_cols] = table[matched_rows, matched_cols]
    predicted[matched_cols] = table[matched_rows].sum(1)
    return {
        "acc": float(table[matched_rows, matched_cols].sum() / table.sum()),
        "nmi": nmi,
        "ari": float(ari),
        "f1": float(np.mean(2 * true_pos / (predicted + table.sum(0)))),
        "homogeneity": float(mi / h_true if h_true else 1.0),
        "completeness": float(mi / h_pred if h_pred else 1.0),
    }


def _entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of a labelling from its per-label counts, as scikit-learn computes it."""
    pi = counts.astype(np.float64)
    if pi.size == 1:
        return 0.0
    pi_sum = np.sum(pi)
    return float(-np.sum((pi / pi_sum) * (np.log(pi) - math.log(pi_sum))))


def streamed_structure_metrics(
    pred: Any,
    colptr: Any,
    row: Any,
    *,
    chunk_edges: int = DEFAULT_CHUNK_EDGES,
    progress: Advance | None = None,
) -> dict[str, float]:
    """:func:`~agc_cli.cluster.metrics.structure_metrics` of ``pred`` (the same numbers, same
    conventions: both directions of every edge stored, a self-loop counting twice), with
    ``colptr`` and ``row`` read in blocks of about ``chunk_edges`` edges.

    Memory: ``pred`` (resident) plus a few int64 arrays of ``chunk_edges``.

    Args:
        pred: ``[N]`` cluster of every node, non-negative (int32 is not widened).
        colptr: ``[N + 1]`` CSC column pointers (a memory-mapped ``.npy`` is read unmapped).
        row: ``[E]`` row indices.
        progress: called with the edges of each block done.

    Returns:
        ``modularity``, ``conductance`` and ``mean_conductance`` as
        :func:`~agc_cli.cluster.metrics.structure_metrics` defines them.
    """
    if chunk_edges < 1:
        raise UsageError(f"chunk_edges must be at least 1, got {chunk_edges}")
    pred_np = _resident(pred)
    num_nodes = int(colptr.shape[0]) - 1
    if pred_np.size != num_nodes:
        raise DataError(f"pred has {pred_np.size} nodes but the graph has {num_nodes}")
    if pred_np.size and pred_np.min() < 0:
        raise DataError("cluster ids must be non-negative")
    k = int(pred_np.max()) + 1 if pred_np.size else 0
    internal = np.zeros(k, dtype=np.int64)
    volume = np.zeros(k, dtype=np.int64)
    advance = progress or _no_progress
    for first, last, bounds in _column_chunks(colptr, chunk_edges):
        src = read_rows(row, int(bounds[0]), int(bounds[-1]))
        per_column = np.diff(bounds)
        if src.size and (int(src.min()) < 0 or int(src.max()) >= num_nodes):
            raise DataError(
                f"row indices of columns {first}..{last - 1} leave [0, {num_nodes}): "
                "the topology is damaged"
            )
        # Columns are contiguous: their clusters repeat without a gather, and a cluster's
        # volume is the sum of its columns' lengths (float64 counts are exact below 2**53).
        column_cluster = pred_np[first:last]
        dst_cluster = np.repeat(column_cluster, per_column)
        dst = np.repeat(np.arange(first, last, dtype=src.dtype), per_column)
        loops = np.bincount(dst_cluster[src == dst], minlength=k)
        inside = dst_cluster[pred_np[src] == dst_cluster]
        degrees = np.bincount(column_cluster, weights=per_column, minlength=k)
        volume += np.rint(degrees).astype(np.int64) + loops
        internal += np.bincount(inside, minlength=k) + loops
        advance(int(src.size))
    # From here on, the arithmetic of metrics.structure_metrics, so the floats agree exactly.
    total = int(volume.sum())
    if total == 0:
        raise DataError("the graph has no edges: structure metrics undefined")
    cut = volume - internal
    smaller_side = np.minimum(volume, total - volume)
    defined = smaller_side > 0
    return {
        "modularity": float(np.sum(internal / total - (volume / total) ** 2)),
        "conductance": float(cut.sum() / total),
        "mean_conductance": (
            float(np.mean(cut[defined] / smaller_side[defined])) if defined.any() else float("nan")
        ),
    }


def _column_chunks(colptr: Any, chunk_edges: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(first, last, colptr[first:last + 1])`` for column ranges of about ``chunk_edges``
    edges (at least one column each); ``colptr`` itself is read ``chunk_edges`` columns at a
    time."""
    num_nodes = int(colptr.shape[0]) - 1
    for start in range(0, num_nodes, chunk_edges):
        stop = min(start + chunk_edges, num_nodes)
        pointers = read_rows(colptr, start, stop + 1).astype(np.int64, copy=False)
        # The first column whose edges start at or after each multiple of chunk_edges.
        marks = np.arange(int(pointers[0]), int(pointers[-1]), chunk_edges)
        cuts = np.searchsorted(pointers[:-1], marks, side="left")
        local = np.unique(np.concatenate([[0], cuts, [stop - start]]))
        for a, b in zip(local[:-1].tolist(), local[1:].tolist(), strict=True):
            yield start + a, start + b, pointers[a : b + 1]


def _resident(values: Any) -> np.ndarray:
    """A 1-D numpy array of ``values`` held in memory (a memory map is read once)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy().reshape(-1)
    if isinstance(values, np.memmap):
        return read_rows(values, 0, int(values.shape[0])).reshape(-1)
    return np.asarray(values).reshape(-1)
