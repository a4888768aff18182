"""Tiny graphs and sampled-like batches for the model tests.

``sample_batch`` builds what agc's neighbour sampler yields (PyG conventions: seeds first, nodes
and edges ordered by hop, per-hop counts), with a plain Python breadth-first search, so the
model tests do not depend on the sampler's implementation.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

from agc_cli.data.graph import Graph, row_normalize


def tiny_graph(
    num_nodes: int = 40, num_features: int = 12, sparse: bool = False, seed: int = 0
) -> Graph:
    """A 3-block stochastic block model with bag-of-words-like (row-normalised) features."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_nodes) % 3
    i, j = torch.triu_indices(num_nodes, num_nodes, offset=1)
    p = torch.where(y[i] == y[j], 0.3, 0.03)
    keep = torch.rand(i.numel(), generator=g) < p
    edge_index = torch.stack([i[keep], j[keep]])
    words = (torch.rand(num_nodes, num_features, generator=g) < 0.25).float()
    words[torch.arange(num_nodes), y] = 1.0  # every row has a word, and a class signal
    x = row_normalize(words.to_sparse_csr() if sparse else words)
    return Graph.from_edge_index("tiny", edge_index, num_nodes, x, y=y)


def sample_batch(
    graph: Graph,
    seeds: Tensor,
    num_hops: int,
    fan_out: int | None = None,
    with_x: bool = True,
    generator: torch.Generator | None = None,
) -> Data:
    """A sampled subgraph around ``seeds``: every neighbour (``fan_out`` None) or at most
    ``fan_out`` random neighbours of each node, hop by hop."""
    colptr, row = graph.colptr.tolist(), graph.row.tolist()
    nodes = seeds.tolist()
    local = {v: k for k, v in enumerate(nodes)}
    frontier = list(nodes)
    src, dst = [], []
    num_nodes, num_edges = [len(nodes)], []
    for _ in range(num_hops):
        found, count = [], 0
        for v in frontier:
            neighbours = row[colptr[v] : colptr[v + 1]]
            if fan_out is not None and len(neighbours) > fan_out:
                pick = torch.randperm(len(neighbours), generator=generator)[:fan_out]
                neighbours = [neighbours[k] for k in pick.tolist()]
            for u in neighbours:
                if u not in local:
                    local[u] = len(nodes)
                    nodes.append(u)
                    found.append(u)
                src.append(local[u])
                dst.append(local[v])
                count += 1
        num_nodes.append(len(found))
        num_edges.append(count)
        frontier = found
    n_id = torch.tensor(nodes)
    data = Data(
        edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
        n_id=n_id,
        batch_size=int(seeds.numel()),
        num_sampled_nodes=num_nodes,
        num_sampled_edges=num_edges,
        num_nodes=len(nodes),
    )
    if with_x:
        data.x = graph.feature_rows(n_id)
    return data
