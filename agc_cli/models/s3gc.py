"""S3GC (Devvrit et al., NeurIPS 2022), https://openreview.net/forum?id=ldl2V3vLZ5."""

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
from agc_cli.models.encoder import make_activation
from agc_cli.models.propagation import check_num_layers, propagate
from agc_cli.models.sparse import SparseMatrix
from agc_cli.models.walks import seed_walks

# From this many nodes on the heads f and g are two-layer MLPs instead of linear maps (PyAGC's
# split between its small and medium S3GC encoders).
MLP_MIN_NODES = 50_000
# Feature columns propagated at a time when precomputing ÃX and S_k X: the propagation is
# column-wise, so the temporaries stay [nodes, PROPAGATION_COLUMNS] however wide the features.
PROPAGATION_COLUMNS = 1024


def ppr_weights(hops: int, alpha: float) -> list[float]:
    """``alpha (1 - alpha)^i`` for ``i = 0..hops``: truncated personalised PageRank."""
    return [alpha * (1 - alpha) ** i for i in range(hops + 1)]


def diffuse(h: Tensor, block: Block, hops: int, alpha: float) -> tuple[Tensor, Tensor]:
    """``(Ã h, S_k h)`` with ``S_k = sum_{i=0..k} alpha (1 - alpha)^i Ã^i`` and
    ``Ã = D̃^-1/2 (A + I) D̃^-1/2``, for the destinations of ``block`` (the whole graph)."""
    weights = ppr_weights(hops, alpha)
    total = weights[0] * h
    first = h
    for i in range(hops):
        h = propagate(h, block, "gcn")
        first = h if i == 0 else first
        total = total + weights[i + 1] * h
    return first, total


@torch.no_grad()
def propagated_features(
    x: Features, block: Block, hops: int, alpha: float
) -> tuple[Tensor, Tensor]:
    """``(Ã X, S_k X)`` (see :func:`diffuse`) of every node of ``block``'s graph.

    Both are dense ``[nodes, features]``; bag-of-words features are densified (one propagation
    step fills in most of their zeros anyway).
    """
    dense = (x.to_dense() if isinstance(x, SparseMatrix) else x).float()
    ax = torch.empty_like(dense)
    sx = torch.empty_like(dense)
    for start in range(0, dense.shape[1], PROPAGATION_COLUMNS):
        columns = slice(start, start + PROPAGATION_COLUMNS)
        ax[:, columns], sx[:, columns] = diffuse(dense[:, columns].contiguous(), block, hops, alpha)
    return ax, sx


def _head(in_channels: int, hidden_channels: int, mlp: bool) -> nn.Module:
    """A linear map, or linear -> PReLU -> linear (PyAGC's medium encoder)."""
    if not mlp:
        layers = [nn.Linear(in_channels, hidden_channels)]
    else:
        layers = [
            nn.Linear(in_channels, hidden_channels),
            make_activation("prelu", hidden_channels),
            nn.Linear(hidden_channels, hidden_channels),
        ]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class S3GCEncoder(nn.Module):
    """``z_i = normalize(f(ÃX)_i + g(S_k X)_i + E_i)`` for node ids ``i``.

    ``E`` is a learned per-node table (``nn.Embedding`` with sparse gradients: a step touches
    only the rows of the nodes in its batch). It indexes nodes by their global id, which the
    layer-wise inference path does not carry: S3GC embeds full-batch (see
    :meth:`forward_full`), which needs no more than the precomputed propagations.
    """

    num_layers = 1
    jk = "none"
    needs_all_layers = False

    def __init__(self, in_channels: int, hidden_channels: int, num_nodes: int, mlp: bool):
        super().__init__()
        self.mlp = mlp
        self.hidden_channels = hidden_channels
        self.out_channels = hidden_channels
        self.f = _head(in_channels, hidden_channels, mlp)
        self.g = _head(in_channels, hidden_channels, mlp)
        self.table = nn.Embedding(num_nodes, hidden_channels, sparse=True)
        nn.init.normal_(self.table.weight)  # the reference's initialisation

    def forward(self, ax: Tensor, sx: Tensor, ids: Tensor) -> Tensor:
        """Embeddings of the nodes ``ids`` from their rows ``ax``, ``sx`` of ÃX and S_k X."""
        return F.normalize(self.f(ax) + self.g(sx) + self.table(ids), dim=-1)

    def forward_full(self, x: Features, block: Block, hops: int, alpha: float) -> Tensor:
        """Every node's embedding with linear heads, transforming before propagating:
        ``Ã (X W_f) + S_k (X W_g)`` equals ``f(ÃX) + g(S_k X)`` and keeps sparse features
        sparse through the transform (on Cora about 80x fewer multiply-adds than the dense
        precomputed rows)."""
        f, g = self.f[0], self.g[0]
        if isinstance(x, SparseMatrix):
            t_f, t_g = x.matmul(f.weight.T), x.matmul(g.weight.T)
        else:
            t_f, t_g = x @ f.weight.T, x @ g.weight.T
        ax_f = propagate(t_f, block, "gcn")
        sx_g = diffuse(t_g, block, hops, alpha)[1]
        ids = torch.arange(block.num_dst, device=ax_f.device)
        return F.normalize(ax_f + f.bias + sx_g + g.bias + self.table(ids), dim=-1)

    def layer_forward(self, i: int, x_src: Features, block: Block) -> Tensor:
        raise UsageError(
            "force_full_batch_inference: s3gc embeds from its per-node table, which layer-wise "
            "inference cannot index; set force_full_batch_inference true"
        )


class S3GC(ClusteringModel):
    """Scalable self-supervised graph clustering: random-walk positives against random negatives
    on a cheap encoder of precomputed propagations plus a per-node embedding.

    **Encoder.** ``normalize(f(ÃX) + g(S_k X) + E)``: ``ÃX`` is one normalised propagation
    step with self-loops, ``S_k X`` truncated personalised PageRank (``k = num_layers`` steps,
    teleport ``alpha``), ``f, g`` linear (linear, PReLU, linear from :data:`MLP_MIN_NODES`
    nodes on) and ``E`` a learned per-node table with sparse gradients. Mini-batch, ``ÃX`` and
    ``S_k X`` are computed once, without parameters, and a step gathers its nodes' rows: its
    cost does not grow with the graph. Full-batch with linear heads, the encoder transforms
    before it propagates instead (the same function, far cheaper on sparse features).

    **Objective.** From every anchor ``num_walks`` uniform walks of ``walk_length`` steps; each
    walk is one window (the reference's context size is the walk length): its visited nodes
    ``P`` are the anchor's positives and as many uniformly drawn nodes ``N`` its negatives. With
    ``pos = logsumexp_{p in P} z_a . z_p`` and ``neg = logsumexp_{m in N} z_a . z_m``, the loss is
    ``-mean exp(pos - logaddexp(pos, neg))``: the share of the window's softmax mass on its
    positives, as the reference computes it (not its logarithm), averaged over windows.

    **Batches.** Full-batch, every node is an anchor once per step; mini-batch, the batch's seed
    nodes are (the sampled neighbourhood is not used: a fan-out of 1 keeps it cheap). Walks run
    on the whole graph registered by :meth:`begin_epoch`, or on the batch's own edges without
    one. Walks and negatives draw from ``self.generator`` when set.

    Paper: https://openreview.net/forum?id=ldl2V3vLZ5
    """

    name = "s3gc"
    paper = "https://openreview.net/forum?id=ldl2V3vLZ5"

    def __init__(
        self,
        encoder: S3GCEncoder,
        hops: int = 2,
        alpha: float = 0.2,
        num_walks: int = 10,
        walk_length: int = 2,
    ):
        super().__init__()
        check_num_layers(hops)
        if not 0 < alpha <= 1:
            raise UsageError(f"alpha: S3GC's PageRank teleport must be in (0, 1] (got {alpha})")
        self.encoder = encoder
        self.hops = hops
        self.alpha = alpha
        self.num_walks = num_walks
        self.walk_length = walk_length
        self._graph: Graph | None = None
        # (ÃX, S_k X) of every node: a function of the graph, recomputed rather than saved.
        self._propagated: tuple[Tensor, Tensor] | None = None

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> S3GC:
        if settings.mini_batch and not settings.force_full_batch_inference:
            raise UsageError(
                "force_full_batch_inference: s3gc embeds full-batch from its per-node table "
                "(layer-wise inference cannot index it); set it true"
            )
        encoder = S3GCEncoder(
            in_channels, settings.hidden_channels, num_nodes, mlp=num_nodes >= MLP_MIN_NODES
        )
        return cls(
            encoder,
            hops=settings.num_layers,
            alpha=settings.alpha,
            num_walks=settings.num_walks,
            walk_length=settings.walk_length,
        )

    def begin_epoch(self, epoch: int, graph: Graph) -> None:
        """Register ``graph``: the walks run on it and the propagations come from it."""
        self._graph = graph

    def propagated(self, batch: GraphBatch) -> tuple[Tensor, Tensor]:
        """``(ÃX, S_k X)`` of every node on ``batch``'s device, computed on first use from a
        full batch or the graph :meth:`begin_epoch` registered."""
        if self._propagated is None:
            if batch.is_full:
                source = batch
            elif self._graph is not None:
                source = GraphBatch.full(self._graph, batch.device)
            else:
                raise RuntimeError(
                    "s3gc: the propagated features come from the whole graph; call "
                    "begin_epoch(graph) or pass a full batch first"
                )
            self._propagated = propagated_features(
                source.x, source.block(0, 1), self.hops, self.alpha
            )
        ax, sx = self._propagated
        if ax.device != batch.device:
            self._propagated = ax, sx = ax.to(batch.device), sx.to(batch.device)
        return ax, sx

    def embed_nodes(self, ids: Tensor, batch: GraphBatch) -> Tensor:
        """Embeddings of the global node ids ``ids`` (sorted and distinct, or every node)."""
        if batch.is_full and not self.encoder.mlp:
            z = self.encoder.forward_full(batch.x, batch.block(0, 1), self.hops, self.alpha)
            return z if ids.numel() == z.shape[0] else z.index_select(0, ids)
        ax, sx = self.propagated(batch)
        return self.encoder(ax.index_select(0, ids), sx.index_select(0, ids), ids)

    def embed(self, batch: GraphBatch) -> Tensor:
        return self.embed_nodes(batch.n_id[: batch.batch_size], batch)

    def contrast_nodes(self, batch: GraphBatch) -> tuple[Tensor, Tensor, Tensor]:
        """The batch's windows as global node ids.

        Returns:
            ``(anchors [B], positives [B, num_walks, walk_length], negatives [same])`` for the
            ``B`` seeds: the nodes each of an anchor's walks visits, and uniform draws.
        """
        seeds = batch.n_id[: batch.batch_size]
        walks = seed_walks(self, batch, self._graph, self.num_walks, self.walk_length)
        positives = walks[:, 1:].reshape(seeds.numel(), self.num_walks, self.walk_length)
        negatives = rng.randint(
            batch.total_nodes, tuple(positives.shape), batch.device, self.generator
        )
        return seeds, positives, negatives

    def loss(self, batch: GraphBatch) -> LossOutput:
        anchors, positives, negatives = self.contrast_nodes(batch)
        count, walks, width = positives.shape
        # Each node is embedded once per step, however many windows it appears in.
        nodes, inverse = torch.unique(
            torch.cat([anchors, positives.reshape(-1), negatives.reshape(-1)]),
            return_inverse=True,
        )
        z = self.embed_nodes(nodes, batch)
        z_anchor = z.index_select(0, inverse[:count]).unsqueeze(-1)  # [B, d, 1]
        rest = inverse[count:].view(2, count, walks * width)

        def log_mass(which: int) -> Tensor:
            """``[B, num_walks]``: logsumexp over each window's nodes of their dot product
            with the anchor (a batched product: no ``[B, K, d]`` elementwise temporary)."""
            others = z.index_select(0, rest[which].reshape(-1)).view(count, walks * width, -1)
            scores = torch.bmm(others, z_anchor).view(count, walks, width)
            return torch.logsumexp(scores, dim=-1)

        pos, neg = log_mass(0), log_mass(1)
        loss = -torch.exp(pos - torch.logaddexp(pos, neg)).mean()
        return LossOutput(loss, {"positive": pos.mean().detach(), "negative": neg.mean().detach()})
