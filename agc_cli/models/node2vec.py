"""Node2Vec (Grover and Leskovec, KDD 2016), https://arxiv.org/abs/1607.00653."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agc_cli.data.graph import Graph
from agc_cli.errors import UsageError
from agc_cli.models import rng
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import Block, Features, GraphBatch
from agc_cli.models.walks import seed_walks


class NodeTable(nn.Module):
    """A learned vector per node (``nn.Embedding`` with sparse gradients: a step touches only
    the rows of the nodes in its windows), standing where other methods have a GNN.

    It indexes nodes by their global id, which the layer-wise inference path does not carry:
    Node2Vec embeds full-batch.
    """

    num_layers = 1
    jk = "none"
    needs_all_layers = False

    def __init__(self, num_nodes: int, channels: int):
        super().__init__()
        self.hidden_channels = channels
        self.out_channels = channels
        self.table = nn.Embedding(num_nodes, channels, sparse=True)
        nn.init.normal_(self.table.weight)  # word2vec-style N(0, 1) start, as PyG's

    def forward(self, ids: Tensor) -> Tensor:
        """The rows of the global node ids ``ids`` (any shape; a trailing channel axis)."""
        return self.table(ids)

    def layer_forward(self, i: int, x_src: Features, block: Block) -> Tensor:
        raise UsageError(
            "force_full_batch_inference: node2vec embeds from its per-node table, which "
            "layer-wise inference cannot index; set force_full_batch_inference true"
        )


class Node2Vec(ClusteringModel):
    """Skip-gram with negative sampling over node2vec's second-order random walks; the node
    features are not used.

    **Walks.** From every start node ``num_walks`` walks of ``walk_length`` steps (so
    ``walk_length + 1`` nodes), biased by the return parameter ``p`` and the in-out parameter
    ``q``: from ``cur`` having come from ``prev``, a neighbour ``x`` is weighted ``1/p`` if it
    is ``prev``, ``1`` if it neighbours ``prev`` and ``1/q`` otherwise (``p = q = 1``: uniform
    walks, DeepWalk).

    **Windows.** Each walk slides a window of ``context_size`` nodes along itself
    (``walk_length + 2 - context_size`` windows); a window's first node is its centre and the
    others its context. For every positive window, ``negatives`` windows pair the same centre
    with ``context_size - 1`` uniformly drawn nodes.

    **Objective.** With ``s(u, v) = e_u . e_v`` on the table rows, the loss is
    ``-mean log σ(s(c, v))`` over the (centre, context) pairs of the positive windows plus
    ``-mean log σ(-s(c, m))`` over those of the negative windows (PyG's Node2Vec loss).

    **Batches.** Full-batch, every node starts walks once per step; mini-batch, the batch's
    seed nodes do (the sampled neighbourhood is not used: a fan-out of 1 keeps it cheap). The
    walks run on the whole graph registered by :meth:`begin_epoch`, or on the batch's own
    edges without one; walks and negatives draw from ``self.generator`` when set. The
    embedding of a node is its table row.

    Paper: https://arxiv.org/abs/1607.00653
    """

    name = "node2vec"
    paper = "https://arxiv.org/abs/1607.00653"

    def __init__(
        self,
        encoder: NodeTable,
        num_walks: int = 10,
        walk_length: int = 9,
        context_size: int = 10,
        p: float = 1.0,
        q: float = 1.0,
        negatives: int = 1,
    ):
        super().__init__()
        if not 2 <= context_size <= walk_length + 1:
            raise UsageError(
                f"context_size: a window holds 2 to walk_length + 1 = {walk_length + 1} nodes "
                f"(got {context_size})"
            )
        if p <= 0 or q <= 0:
            raise UsageError(f"walk_p, walk_q: node2vec's walk biases must be > 0 (got {p}, {q})")
        self.encoder = encoder
        self.num_walks = num_walks
        self.walk_length = walk_length
        self.context_size = context_size
        self.p = p
        self.q = q
        self.negatives = negatives
        self._graph: Graph | None = None

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> Node2Vec:
        if settings.mini_batch and not settings.force_full_batch_inference:
            raise UsageError(
                "force_full_batch_inference: node2vec embeds full-batch from its per-node table "
                "(layer-wise inference cannot index it); set it true"
            )
        return cls(
            NodeTable(num_nodes, settings.hidden_channels),
            num_walks=settings.num_walks,
            walk_length=settings.walk_length,
            context_size=settings.context_size,
            p=settings.walk_p,
            q=settings.walk_q,
            negatives=settings.negatives,
        )

    def begin_epoch(self, epoch: int, graph: Graph) -> None:
        """Register ``graph``: the walks run on it."""
        self._graph = graph

    def embed(self, batch: GraphBatch) -> Tensor:
        return self.encoder(batch.n_id[: batch.batch_size])

    def walks(self, batch: GraphBatch) -> Tensor:
        """``[B * num_walks, walk_length + 1]`` global node ids of the walks from the batch's
        seeds (``num_walks`` consecutive rows per seed)."""
        return seed_walks(
            self, batch, self._graph, self.num_walks, self.walk_length, p=self.p, q=self.q
        )

    def windows(self, batch: GraphBatch) -> tuple[Tensor, Tensor]:
        """``(positive [P, context_size], negative [P * negatives, context_size])`` windows of
        global ids, centre first: the walks' sliding windows, and each centre with uniform
        draws."""
        positive = self.walks(batch).unfold(1, self.context_size, 1).reshape(-1, self.context_size)
        centres = positive[:, :1].repeat(self.negatives, 1)
        drawn = rng.randint(
            batch.total_nodes, (centres.shape[0], self.context_size - 1), batch.device,
            self.generator,
        )  # fmt: skip
        return positive, torch.cat([centres, drawn], dim=1)

    def loss(self, batch: GraphBatch) -> LossOutput:
        positive, negative = self.windows(batch)
        # Each node's row is looked up once per step, however many windows it appears in: the
        # table's sparse gradient then has a row per distinct node, which SparseAdam coalesces
        # faster than one row per occurrence (its step on Cora: 11 ms instead of 18 on a CPU).
        nodes, inverse = torch.unique(
            torch.cat([positive.reshape(-1), negative.reshape(-1)]), return_inverse=True
        )
        h = self.encoder(nodes)
        split = positive.numel()
        pos = -F.logsigmoid(_scores(h, inverse[:split].view(positive.shape))).mean()
        neg = -F.logsigmoid(-_scores(h, inverse[split:].view(negative.shape))).mean()
        return LossOutput(pos + neg, {"positive": pos.detach(), "negative": neg.detach()})


def _scores(h: Tensor, windows: Tensor) -> Tensor:
    """``[W, C - 1]``: the dot products of each window's centre row of ``h`` with its other
    rows (``windows``: ``[W, C]`` row indices, centre first)."""
    rows = h.index_select(0, windows.reshape(-1)).view(*windows.shape, -1)  # [W, C, d]
    # Elementwise, not bmm: [W, C - 1, d] by [W, d, 1] products are tiny matmuls, slower on
    # the CPU than the multiply-and-sum (Cora's backward: 24 ms instead of 34).
    return (rows[:, 1:] * rows[:, :1]).sum(dim=-1)
