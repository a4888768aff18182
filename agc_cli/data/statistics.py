"""Graph statistics computed from the CSC topology in chunks of columns."""

from __future__ import annotations

from typing import Any

import torch

from agc_cli.data.graph import Graph

_CHUNK_EDGES = 1 << 24  # edges per chunk: bounds the temporaries on huge graphs


def graph_statistics(graph: Graph) -> dict[str, Any]:
    """Counts, degrees, density and (with labels) edge and node homophily.

    ``undirected_edges`` counts each unordered pair once (a self-loop counts once).
    """
    n = graph.num_nodes
    deg = graph.degree()
    self_loops = 0
    reciprocal_pairs = 0  # edges (u, v), u != v, counted once per direction
    same_label = labeled_edges = 0
    y = graph.y
    node_same = torch.zeros(n, dtype=torch.float64) if y is not None else None
    node_labeled_nbrs = torch.zeros(n, dtype=torch.float64) if y is not None else None
    for start, stop in _column_chunks(graph.colptr):
        lo, hi = int(graph.colptr[start]), int(graph.colptr[stop])
        row = graph.row[lo:hi].long()
        col = torch.repeat_interleave(
            torch.arange(start, stop, dtype=torch.long), deg[start:stop].long()
        )
        self_loops += int((row == col).sum())
        reciprocal_pairs += int((row != col).sum())
        if y is not None:
            both = (y[row] >= 0) & (y[col] >= 0)
            same = (y[row] == y[col]) & both
            labeled_edges += int(both.sum())
            same_label += int(same.sum())
            node_same.index_add_(0, col, same.double())
            node_labeled_nbrs.index_add_(0, col, both.double())
    undirected = reciprocal_pairs // 2 + self_loops
    stats: dict[str, Any] = {
        "nodes": n,
        "directed_edges": graph.num_edges,
        "undirected_edges": undirected,
        "features": graph.num_features,
        "classes": graph.num_classes,
        "avg_degree": graph.num_edges / max(n, 1),
        "max_degree": int(deg.max()) if n else 0,
        "isolated_nodes": int((deg == 0).sum()),
        "self_loops": self_loops,
        "density": undirected / max(n * (n - 1) / 2, 1),
        "sparse_features": graph.sparse_features,
    }
    if y is not None:
        stats["labeled_nodes"] = int((y >= 0).sum())
        stats["edge_homophily"] = same_label / labeled_edges if labeled_edges else None
        has = (node_labeled_nbrs > 0) & (y >= 0)
        stats["node_homophily"] = (
            float((node_same[has] / node_labeled_nbrs[has]).mean()) if has.any() else None
        )
    return stats


def _column_chunks(colptr: torch.Tensor):
    """Yield ``(start, stop)`` column ranges holding about ``_CHUNK_EDGES`` edges each."""
    n = colptr.numel() - 1
    start = 0
    while start < n:
        target = int(colptr[start]) + _CHUNK_EDGES
        stop = int(torch.searchsorted(colptr, target, right=True)) - 1
        stop = min(max(stop, start + 1), n)
        yield start, stop
        start = stop
