"""Neuromap: the map equation as a clustering loss (Blöcker et al., NeurIPS 2024),
https://arxiv.org/abs/2310.01144."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from agc_cli.models.base import ClusteringModel, LossOutput, cluster_count
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


class Neuromap(ClusteringModel):
    """Soft cluster assignments trained to minimise the two-level map equation, with DMoN's
    collapse regulariser.

    ``S = softmax(Linear(encoder(X)))``; the loss is ``L(S) + collapse_weight * (||sum_i S_i||
    * sqrt(k) / n - 1)``, where ``L`` is the expected codelength in bits per step of a random
    walker (see :func:`codelength`). The flow is the walker's on the undirected graph: node
    visit rates ``p_u = d_u / 2m`` and ``F = A / 2m`` on the edges. This is exactly the
    paper's (and PyAGC's) smart-teleportation flow with teleportation in proportion to
    in-degree, for any teleportation probability ``α``: ``d / 2m`` is its PageRank fixed point
    and every edge carries ``α / 2m + (1 - α) (d_u / 2m) / d_u = 1 / 2m``. ``k`` is an upper
    bound: the codelength may leave modules empty.

    In a sampled batch the sums run over the seed nodes ``B`` with global degrees, as DMoN's:
    the flow within modules ``diag(Sᵀ F S)`` is estimated from the sampled edges between seeds
    (each rescaled by ``degree / sampled degree`` of its target) times ``(N / |B|)²``, module
    and node visit rates from the seeds' times ``N / |B|``. This is the full-graph value when
    ``B`` is every node and neighbourhoods are complete. The embedding is ``S`` (k-means on it
    was within 0.5 NMI of PyAGC's argmax readout on Cora, three runs).

    Args:
        encoder: the GNN (its last layer is plain: the linear head follows).
        n_clusters: the number of modules ``k`` (at most).
        collapse_weight: weight of the collapse regulariser.

    Paper: https://arxiv.org/abs/2310.01144
    """

    name = "neuromap"
    paper = "https://arxiv.org/abs/2310.01144"

    def __init__(self, encoder: Encoder, n_clusters: int, collapse_weight: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.n_clusters = n_clusters
        self.collapse_weight = collapse_weight
        # PyAGC's head: Glorot-initialised, without bias (its larger initial logits leave the
        # near-uniform start of the codelength's plateau sooner).
        self.head = nn.Linear(encoder.out_channels, n_clusters, bias=False)
        nn.init.xavier_uniform_(self.head.weight)

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> Neuromap:
        n_clusters = cluster_count("Neuromap", settings, num_classes)
        encoder = Encoder.from_settings(in_channels, settings, plain_last=True)
        return cls(encoder, n_clusters, collapse_weight=settings.lambd)

    def readout(self, h: Tensor) -> Tensor:
        return torch.softmax(self.head(h), dim=-1)

    def loss(self, batch: GraphBatch) -> LossOutput:
        s = self.embed(batch)
        length = codelength(s, batch)
        sizes = s.sum(dim=0)
        collapse = sizes.norm() * math.sqrt(self.n_clusters) / batch.batch_size - 1
        return LossOutput(
            length + self.collapse_weight * collapse,
            {"codelength": length.detach(), "collapse": collapse.detach()},
        )


def codelength(s: Tensor, batch: GraphBatch) -> Tensor:
    """The two-level map equation of the assignments ``s`` of the batch's seeds, in bits.

    ``L = q H(Q) + sum_m p_m H(P_m)``: ``q`` is the rate of module exits, ``Q`` the modules'
    exit rates over ``q``, ``p_m`` module ``m``'s exit rate plus its nodes' visit rates and
    ``P_m`` those rates over ``p_m``. With undirected flow (entering and exiting rates equal)
    it expands to ``plogp(q) - 2 sum_m plogp(exit_m) - sum_u plogp(p_u) + sum_m plogp(exit_m
    + flow_m)`` (``plogp(x) = x log2 x``), where a module's flow ``flow_m = sum_u s_um p_u``
    and ``exit_m = flow_m - diag(Sᵀ F S)_m`` are soft. In a sampled batch these are the
    estimates described in :class:`Neuromap`.
    """
    block = batch.seed_block()
    two_m = float(batch.total_edges)
    scale = batch.total_nodes / batch.batch_size
    visit = block.degree / two_m
    within = scale**2 * torch.sum(block.adjacency("sum").matmul(s) * s, dim=0) / two_m
    flow = scale * (s.T @ visit)
    # Sampled estimates of the two terms can cross; the exit rate of a module is never negative.
    exits = (flow - within).clamp(min=0)
    return (
        plogp(exits.sum())
        - 2 * plogp(exits).sum()
        - scale * plogp(visit).sum()
        + plogp(exits + flow).sum()
    )


def plogp(x: Tensor) -> Tensor:
    """``x log2 x`` element-wise, ``0`` at ``x = 0`` (with a finite gradient there)."""
    return x * torch.log2(x.clamp(min=torch.finfo(x.dtype).tiny))
