"""Clustering quality: label metrics against ground truth and structure metrics on the graph.

Every metric is a fraction (modularity lies in [-1/2, 1]); presenting them x100 is the CLI's job.
Structure metrics stream the CSC topology in blocks of columns, so they work on memory-mapped
graphs much larger than the embeddings.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from agc_cli.errors import DataError, UsageError

# Edges per block of the structure metrics: a handful of int64 arrays of this length.
DEFAULT_CHUNK_EDGES = 1 << 22

ArrayLike = Tensor | np.ndarray


def evaluate(
    pred: ArrayLike,
    y: ArrayLike | None = None,
    colptr: ArrayLike | None = None,
    row: ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> dict[str, float]:
    """Every metric the inputs allow.

    Label metrics (:func:`label_metrics`) need ``y`` with at least one labeled node; structure
    metrics (:func:`structure_metrics`) need ``colptr`` and ``row``.

    Args:
        pred: ``[N]`` cluster of every node.
        y: ``[N]`` class labels, ``< 0`` for unlabeled nodes.
        colptr: CSC column pointers ``[N + 1]`` of the undirected graph (both directions stored).
        row: CSC row indices ``[E]``.
        mask: nodes to evaluate on (a boolean ``[N]`` mask or node indices); structure metrics
            then use the subgraph induced by these nodes.

    Returns:
        Metric name to value; empty when neither labels nor a graph is given.
    """
    if (colptr is None) != (row is None):
        raise UsageError("structure metrics need both colptr and row")
    pred_np = _flat(pred)
    node_mask = None if mask is None else _node_mask(mask, pred_np.size)
    metrics: dict[str, float] = {}
    if y is not None:
        y_np = _flat(y)
        if y_np.size != pred_np.size:
            raise DataError(f"pred has {pred_np.size} nodes but y has {y_np.size}")
        if node_mask is not None:
            pred_np, y_np = pred_np[node_mask], y_np[node_mask]
        if (y_np >= 0).any():
            metrics.update(label_metrics(pred_np, y_np))
    if colptr is not None:
        metrics.update(structure_metrics(pred, colptr, row, mask=node_mask))
    return metrics


def label_metrics(pred: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """ACC, NMI, ARI, macro-F1, homogeneity and completeness on the labeled nodes (``y >= 0``).

    Returns:
        ``acc``, ``nmi``, ``ari``, ``f1``, ``homogeneity``, ``completeness``, each in [0, 1]
        (ARI may dip below 0).
    """
    from sklearn.metrics import (
        adjusted_rand_score,
        homogeneity_completeness_v_measure,
        normalized_mutual_info_score,
    )

    pred_np, y_np = _flat(pred), _flat(y)
    if pred_np.size != y_np.size:
        raise DataError(f"pred has {pred_np.size} nodes but y has {y_np.size}")
    labeled = y_np >= 0
    if not labeled.any():
        raise DataError("no labeled nodes (every label is < 0): label metrics are undefined")
    pred_np, y_np = pred_np[labeled], y_np[labeled]
    homogeneity, completeness, _ = homogeneity_completeness_v_measure(y_np, pred_np)
    return {
        "acc": cluster_accuracy(y_np, pred_np),
        "nmi": float(normalized_mutual_info_score(y_np, pred_np)),
        "ari": float(adjusted_rand_score(y_np, pred_np)),
        "f1": matched_macro_f1(y_np, pred_np),
        "homogeneity": float(homogeneity),
        "completeness": float(completeness),
    }


def cluster_accuracy(y: ArrayLike, pred: ArrayLike) -> float:
    """Accuracy after the best one-to-one matching of clusters to classes (Hungarian method).

    With more clusters than classes the unmatched clusters stay unmatched: their nodes count as
    wrong rather than merging into a matched cluster. All nodes are taken as labeled.
    """
    contingency, clusters, classes = _matching(y, pred)
    return float(contingency[clusters, classes].sum() / contingency.sum())


def matched_macro_f1(y: ArrayLike, pred: ArrayLike) -> float:
    """Macro-F1 over the classes after the matching of :func:`cluster_accuracy`.

    Nodes of unmatched clusters count as misclassified (a false negative of their class, a false
    positive of none); a class left without a cluster scores 0. All nodes are taken as labeled.
    """
    contingency, clusters, classes = _matching(y, pred)
    true_pos = np.zeros(contingency.shape[1])
    predicted = np.zeros(contingency.shape[1])
    true_pos[classes] = contingency[clusters, classes]
    predicted[classes] = contingency[clusters].sum(1)
    # 2TP + FP + FN = (predicted as the class) + (truly in the class); both > 0 for every class.
    return float(np.mean(2 * true_pos / (predicted + contingency.sum(0))))


def _matching(y: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster x class contingency matrix and the matched (cluster, class) index pairs."""
    y_np, pred_np = _flat(y), _flat(pred)
    if y_np.size != pred_np.size or y_np.size == 0:
        raise DataError(
            f"need equally many labels and predictions, got {y_np.size} and {pred_np.size}"
        )
    classes, y_idx = np.unique(y_np, return_inverse=True)
    clusters, pred_idx = np.unique(pred_np, return_inverse=True)
    contingency = np.bincount(
        pred_idx * classes.size + y_idx, minlength=clusters.size * classes.size
    ).reshape(clusters.size, classes.size)
    matched_clusters, matched_classes = linear_sum_assignment(contingency, maximize=True)
    return contingency, matched_clusters, matched_classes


def structure_metrics(
    pred: ArrayLike,
    colptr: ArrayLike,
    row: ArrayLike,
    mask: ArrayLike | None = None,
    chunk_edges: int = DEFAULT_CHUNK_EDGES,
) -> dict[str, float]:
    """Modularity and conductance of a clustering of an undirected graph stored in CSC form.

    Both directions of every edge are stored, so ``m = E / 2``; a self-loop, stored once, counts
    as both directions (degree 2), as in networkx.

    Args:
        pred: ``[N]`` cluster of every node (non-negative integers; ignored outside ``mask``).
        colptr: ``[N + 1]`` column pointers (tensor or, for large graphs, a memory-mapped array).
        row: ``[E]`` row indices.
        mask: evaluate on the subgraph induced by these nodes (boolean ``[N]`` or node indices):
            only edges with both endpoints in the mask count.
        chunk_edges: edges read per block.

    Returns:
        ``modularity`` (Newman), ``conductance`` (cut edges over all edges, as in PyAGC) and
        ``mean_conductance`` (mean over clusters of cut(C) / min(vol C, vol rest); clusters with
        either volume 0 are left out, NaN if that leaves none).
    """
    pred_np = _flat(pred).astype(np.int64, copy=False)
    colptr_np, row_np = _flat(colptr), _flat(row)
    num_nodes = colptr_np.size - 1
    if pred_np.size != num_nodes:
        raise DataError(f"pred has {pred_np.size} nodes but the graph has {num_nodes}")
    node_mask = None if mask is None else _node_mask(mask, num_nodes)
    counted = pred_np if node_mask is None else pred_np[node_mask]
    if counted.size and counted.min() < 0:
        raise DataError("cluster ids must be non-negative")
    k = int(counted.max()) + 1 if counted.size else 0
    internal = np.zeros(k, dtype=np.int64)
    volume = np.zeros(k, dtype=np.int64)
    for first, last in _column_blocks(colptr_np, chunk_edges):
        bounds = np.asarray(colptr_np[first : last + 1], dtype=np.int64)
        src = np.asarray(row_np[bounds[0] : bounds[-1]], dtype=np.int64)
        dst = np.repeat(np.arange(first, last, dtype=np.int64), np.diff(bounds))
        if node_mask is not None:
            keep = node_mask[src] & node_mask[dst]
            src, dst = src[keep], dst[keep]
        dst_cluster = pred_np[dst]
        loops = dst_cluster[src == dst]
        inside = dst_cluster[pred_np[src] == dst_cluster]
        volume += np.bincount(dst_cluster, minlength=k) + np.bincount(loops, minlength=k)
        internal += np.bincount(inside, minlength=k) + np.bincount(loops, minlength=k)
    total = int(volume.sum())
    if total == 0:
        raise DataError(
            "the graph (or its masked subgraph) has no edges: structure metrics undefined"
        )
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


def _column_blocks(colptr: np.ndarray, chunk_edges: int) -> list[tuple[int, int]]:
    """``(first, last)`` column ranges of about ``chunk_edges`` edges (at least one column)."""
    if chunk_edges < 1:
        raise UsageError(f"chunk_edges must be at least 1, got {chunk_edges}")
    num_nodes, num_edges = colptr.size - 1, int(colptr[-1])
    # The first column whose edges start at or after each multiple of chunk_edges.
    cuts = np.searchsorted(colptr[:num_nodes], np.arange(0, num_edges, chunk_edges), side="left")
    bounds = np.unique(np.concatenate([[0], cuts, [num_nodes]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _flat(values: ArrayLike) -> np.ndarray:
    """A 1-D numpy view (CPU tensors and memory maps are not copied)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return values.reshape(-1)


def _node_mask(mask: ArrayLike, num_nodes: int) -> np.ndarray:
    """Boolean ``[N]`` mask from a boolean mask or an array of node indices."""
    mask_np = _flat(mask)
    if mask_np.dtype == np.bool_:
        if mask_np.size != num_nodes:
            raise DataError(f"mask has {mask_np.size} entries but the graph has {num_nodes} nodes")
        return mask_np
    node_mask = np.zeros(num_nodes, dtype=bool)
    node_mask[mask_np.astype(np.int64, copy=False)] = True
    return node_mask
