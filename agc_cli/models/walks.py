"""Random walks from a batch's seed nodes, for the methods trained on walk windows (S3GC,
Node2Vec)."""

from __future__ import annotations

import torch
from torch import Tensor

from agc_cli.data.graph import Graph, to_csc
from agc_cli.models.base import ClusteringModel
from agc_cli.models.batch import GraphBatch


def seed_walks(
    model: ClusteringModel,
    batch: GraphBatch,
    graph: Graph | None,
    num_walks: int,
    walk_length: int,
    p: float = 1.0,
    q: float = 1.0,
) -> Tensor:
    """``[B * num_walks, walk_length + 1]`` global node ids of ``num_walks`` walks from each of
    the batch's ``B`` seeds (consecutive rows per seed), drawn with the model's engine-bound
    ``random_walk`` tool and generator: on ``graph`` when given (the whole graph), else on the
    batch's own edges."""
    seeds = batch.n_id[: batch.batch_size]
    if graph is not None:
        colptr, row = graph.colptr, graph.row
        start, to_global = seeds, None
    else:
        colptr, row = to_csc(batch.edge_index.cpu(), batch.num_nodes, undirected=False)
        start, to_global = torch.arange(batch.batch_size), batch.n_id
    generator = model.generator
    device = generator.device if generator is not None else colptr.device
    walks = model.tool("random_walk")(
        colptr.to(device), row.to(device),
        start.to(device).repeat_interleave(num_walks), walk_length, generator, p=p, q=q,
    ).to(batch.device)  # fmt: skip
    return walks if to_global is None else to_global[walks]
