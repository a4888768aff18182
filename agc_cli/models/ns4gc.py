"""NS4GC (Liu et al., TKDE 2024), https://arxiv.org/abs/2408.03765."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from agc_cli.models import rng
from agc_cli.models.augment import two_views
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder

# Up to this many seeds the sparsity term runs over every seed pair; above it (n^2 floats
# would take more than 256 MiB, twice with the sigmoid kept for backward) it runs over every
# row against a random subset of DENSE_MAX_NODES^2 / n columns.
DENSE_MAX_NODES = 8192


class NS4GC(ClusteringModel):
    """Node similarity matrix learning: make ``S = Z1 Z2ᵀ`` look like a clustered graph.

    Two augmented views (edges dropped, feature columns masked, with per-view rates) give
    L2-normalised embeddings ``Z1, Z2`` of the ``n`` seed nodes and their cosine similarity
    ``S``. The loss has three terms:

    - alignment ``-mean_i S_ii``: a node agrees with itself across views;
    - neighbour ``-lambd * mean_{(i, j) in E} S_ij``: edges are pulled together;
    - sparsity ``gamma * mean_{(i, j) not in E, i != j} sigmoid((S_ij - threshold) / tau)``: a
      smooth count of non-adjacent pairs more similar than ``threshold``, which pushes them
      below it and keeps ``S`` sparse.

    The embedding is the L2-normalised encoder output on the unaugmented graph.

    **Scale.** Up to :data:`DENSE_MAX_NODES` seeds the sparsity term is exact (one ``n x n``
    product); above it, every row is compared with a random subset of the columns (an
    unbiased estimate of the mean, at most ``DENSE_MAX_NODES^2`` entries). In mini-batch the
    terms run over the batch's seeds: the edges are the sampled ones between seeds
    (:meth:`GraphBatch.seed_block`), the non-edges the other seed pairs.

    Args:
        encoder: the GNN; its last layer is plain, as in the paper.
        lambd: weight of the neighbour term.
        gamma: weight of the sparsity term.
        threshold: similarity ``s`` above which a non-edge is penalised.
        tau: temperature of the sigmoid.
        edge_drop: fraction of edges dropped in view 1 and view 2.
        feature_mask: fraction of feature columns (or entries) masked in view 1 and view 2.
        feature_masking: ``"columns"`` or ``"entries"`` (see :mod:`agc_cli.models.augment`).

    Paper: https://arxiv.org/abs/2408.03765
    """

    name = "ns4gc"
    paper = "https://arxiv.org/abs/2408.03765"

    def __init__(
        self,
        encoder: Encoder,
        lambd: float = 1.0,
        gamma: float = 1.0,
        threshold: float = 0.6,
        tau: float = 0.1,
        edge_drop: Sequence[float] = (0.2, 0.2),
        feature_mask: Sequence[float] = (0.2, 0.2),
        feature_masking: str = "columns",
    ):
        super().__init__()
        self.encoder = encoder
        self.lambd = lambd
        self.gamma = gamma
        self.threshold = threshold
        self.tau = tau
        self.edge_drop = tuple(edge_drop)
        self.feature_mask = tuple(feature_mask)
        self.feature_masking = feature_masking

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> NS4GC:
        return cls(
            Encoder.from_settings(in_channels, settings, plain_last=True),
            lambd=settings.lambd,
            gamma=settings.gamma,
            threshold=settings.threshold,
            tau=settings.tau,
            edge_drop=settings.edge_drop,
            feature_mask=settings.feature_mask,
            feature_masking=settings.feature_masking,
        )

    def readout(self, h: Tensor) -> Tensor:
        return F.normalize(h, dim=-1)

    def loss(self, batch: GraphBatch) -> LossOutput:
        z1, z2 = (self.readout(z) for z in two_views(self, batch))
        src, dst = batch.seed_block().edge_index
        not_loop = src != dst
        edges = torch.stack([src[not_loop], dst[not_loop]])
        alignment = alignment_term(z1, z2)
        neighbour = neighbour_term(z1, z2, edges)
        sparsity = sparsity_term(z1, z2, edges, self.threshold, self.tau, self.generator)
        return LossOutput(
            alignment + self.lambd * neighbour + self.gamma * sparsity,
            {
                "alignment": alignment.detach(),
                "neighbour": neighbour.detach(),
                "sparsity": sparsity.detach(),
            },
        )


def alignment_term(z1: Tensor, z2: Tensor) -> Tensor:
    """``-mean_i z1_i . z2_i``."""
    return -(z1 * z2).sum(dim=-1).mean()


def neighbour_term(z1: Tensor, z2: Tensor, edges: Tensor) -> Tensor:
    """``-mean over edges (i, j) of z1_i . z2_j`` (zero without edges)."""
    if edges.shape[1] == 0:
        return (z1.sum() + z2.sum()) * 0
    return -(z1[edges[0]] * z2[edges[1]]).sum(dim=-1).mean()


def sparsity_term(
    z1: Tensor,
    z2: Tensor,
    edges: Tensor,
    threshold: float,
    tau: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``mean sigmoid((z1_i . z2_j - threshold) / tau)`` over non-adjacent pairs ``i != j``.

    Args:
        edges: ``[2, E]`` distinct edges ``(i, j)`` among the rows, without self-loops.
    """
    n = z1.shape[0]
    if n <= DENSE_MAX_NODES:
        cols = torch.arange(n, device=z1.device)
    else:
        cols = rng.randperm(n, z1.device, generator)[: DENSE_MAX_NODES**2 // n]
    m = cols.numel()
    sim = torch.sigmoid((z1 @ z2[cols].T - threshold) / tau)
    # Subtract the diagonal and the edges that fall in the chosen columns instead of masking:
    # a boolean n x m mask would cost as much as the product.
    position = torch.full((n,), -1, dtype=torch.long, device=z1.device)
    position[cols] = torch.arange(m, device=z1.device)
    src, dst = edges
    hit = position[dst] >= 0
    src, col = src[hit], position[dst[hit]]
    excluded = sim[cols, torch.arange(m, device=z1.device)].sum() + sim[src, col].sum()
    count = max(n * m - m - int(src.numel()), 1)
    return (sim.sum() - excluded) / count
