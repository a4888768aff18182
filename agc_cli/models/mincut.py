"""MinCut pooling as a clustering method (Bianchi et al., ICML 2020),
https://arxiv.org/abs/1907.00481."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from agc_cli.models.base import ClusteringModel, LossOutput, cluster_count
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


class MinCut(ClusteringModel):
    """Soft cluster assignments trained to minimise a relaxed normalised cut, kept balanced
    and orthogonal.

    ``S = softmax(Linear(encoder(X)))``; the loss is ``cut + lambd * ortho`` with
    ``cut = -tr(Sᵀ A S) / tr(Sᵀ D S)`` (``D`` the degrees) and ``ortho = ||SᵀS / ||SᵀS||_F -
    I_k / sqrt(k)||_F``, which is zero exactly when the clusters are equally large and
    disjoint. Both products with ``A`` are sparse.

    In a sampled batch the sums run over the seed nodes ``S`` with their global degrees:
    ``tr(Sᵀ A S)`` over the sampled edges between seeds (each rescaled by ``degree / sampled
    degree`` of its target) estimates ``|S| / N`` of the full-graph value relative to
    ``tr(Sᵀ D S)``, so the ratio is multiplied by ``N / |S|`` (1 in full-batch). The embedding
    is ``S``.

    Args:
        encoder: the GNN (its last layer is plain: the linear head follows).
        n_clusters: number of clusters ``k``.
        lambd: weight of the orthogonality term.

    Paper: https://arxiv.org/abs/1907.00481
    """

    name = "mincut"
    paper = "https://arxiv.org/abs/1907.00481"

    def __init__(self, encoder: Encoder, n_clusters: int, lambd: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.n_clusters = n_clusters
        self.lambd = lambd
        self.head = nn.Linear(encoder.out_channels, n_clusters)

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> MinCut:
        n_clusters = cluster_count("MinCut", settings, num_classes)
        encoder = Encoder.from_settings(in_channels, settings, plain_last=True)
        return cls(encoder, n_clusters, lambd=settings.lambd)

    def readout(self, h: Tensor) -> Tensor:
        return torch.softmax(self.head(h), dim=-1)

    def loss(self, batch: GraphBatch) -> LossOutput:
        s = self.embed(batch)
        block = batch.seed_block()
        scale = batch.total_nodes / batch.batch_size
        cut = -scale * cut_ratio(s, block.adjacency("sum").matmul(s), block.degree)
        ortho = orthogonality(s)
        return LossOutput(cut + self.lambd * ortho, {"cut": cut.detach(), "ortho": ortho.detach()})


def cut_ratio(s: Tensor, adjacency_s: Tensor, degree: Tensor) -> Tensor:
    """``tr(Sᵀ A S) / tr(Sᵀ D S)`` from ``A S`` (``adjacency_s``) and the degrees."""
    within = torch.sum(adjacency_s * s)
    volume = torch.sum(degree[:, None] * s * s)
    return within / volume.clamp(min=1e-12)


def orthogonality(s: Tensor) -> Tensor:
    """``||SᵀS / ||SᵀS||_F - I_k / sqrt(k)||_F``: zero for equal-sized disjoint clusters."""
    gram = s.T @ s
    k = gram.shape[0]
    eye = torch.eye(k, device=s.device, dtype=s.dtype) / math.sqrt(k)
    return torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram) - eye)
