"""Deep Modularity Networks (Tsitsulin et al., JMLR 2023), https://arxiv.org/abs/2006.16904."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from agc_cli.models.base import ClusteringModel, LossOutput, cluster_count
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


class DMoN(ClusteringModel):
    """Soft cluster assignments trained to maximise modularity, with a collapse regulariser.

    ``C = softmax(Linear(encoder(X)))``; the loss is ``-Q + collapse_weight * (||sum_i C_i|| *
    sqrt(k) / n - 1)`` with the soft modularity ``Q = (tr(Cᵀ A C) - ||Cᵀ d||² / 2m) / 2m``.

    In a sampled batch the sums run over the seed nodes ``S`` with global degrees ``d`` and
    edge count ``m``: ``Q ≈ (N / |S|)² (tr(C_Sᵀ A_SS C_S) - ||C_Sᵀ d_S||² / 2m) / 2m``, where
    ``A_SS`` is estimated from the sampled edges between seeds (each rescaled by
    ``degree / sampled degree`` of its target). This is the full-graph value when ``S`` is
    every node and neighbourhoods are complete. The embedding is ``C``.

    Args:
        encoder: the GNN (its last layer has an activation: the linear head follows).
        n_clusters: number of clusters ``k``.
        collapse_weight: weight of the collapse regulariser.

    Paper: https://arxiv.org/abs/2006.16904
    """

    name = "dmon"
    paper = "https://arxiv.org/abs/2006.16904"

    def __init__(self, encoder: Encoder, n_clusters: int, collapse_weight: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.n_clusters = n_clusters
        self.collapse_weight = collapse_weight
        self.head = nn.Linear(encoder.out_channels, n_clusters)

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> DMoN:
        n_clusters = cluster_count("DMoN", settings, num_classes)
        return cls(Encoder.from_settings(in_channels, settings), n_clusters)

    def readout(self, h: Tensor) -> Tensor:
        return torch.softmax(self.head(h), dim=-1)

    def loss(self, batch: GraphBatch) -> LossOutput:
        c = self.embed(batch)
        block = batch.seed_block()
        weight = block.adjacency("sum")
        two_m = float(batch.total_edges)
        within = torch.sum(weight.matmul(c) * c)
        pooled_degree = c.T @ block.degree
        scale = (batch.total_nodes / batch.batch_size) ** 2
        modularity = scale * (within - pooled_degree.pow(2).sum() / two_m) / two_m
        sizes = c.sum(dim=0)
        collapse = sizes.norm() * math.sqrt(self.n_clusters) / batch.batch_size - 1
        return LossOutput(
            -modularity + self.collapse_weight * collapse,
            {"modularity": modularity.detach(), "collapse": collapse.detach()},
        )
