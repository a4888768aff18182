"""Tiny synthetic graphs for engine tests."""

from __future__ import annotations

import torch

from agc_cli.data.graph import Graph


def tiny_graph(
    nodes: int = 60, clusters: int = 3, features: int = 8, degree: int = 4, seed: int = 0,
    sparse: bool = False,
) -> Graph:  # fmt: skip
    """A small clustered random graph with labels (homophilous edges, noisy features)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(nodes) % clusters
    src = torch.randint(0, nodes, (nodes * degree // 2,), generator=g)
    same = torch.rand(src.numel(), generator=g) < 0.8
    offset = torch.randint(1, max(nodes // clusters, 2), (src.numel(),), generator=g) * clusters
    dst = torch.where(same, (src + offset) % nodes, torch.randint(0, nodes, src.shape, generator=g))
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    centers = torch.randn(clusters, features, generator=g) * 2
    x = centers[y] + torch.randn(nodes, features, generator=g)
    if sparse:
        x = (x > 1.0).float()
        x = x.to_sparse_csr()
    return Graph.from_edge_index("tiny", edge_index, nodes, x, y, num_classes=clusters)
