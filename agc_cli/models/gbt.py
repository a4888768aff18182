"""Graph Barlow Twins (Bielak et al., Knowledge-Based Systems 2022),
https://arxiv.org/abs/2106.02466."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from agc_cli.models.augment import two_views
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


class GraphBarlowTwins(ClusteringModel):
    """Barlow Twins on graphs: the two views' cross-correlation is driven to the identity.

    Each view drops a fraction of edges and masks a fraction of feature columns (per-view
    rates). With ``z1, z2`` the views' embeddings of the ``n`` seeds, each dimension
    standardised over the seeds, the cross-correlation is ``C = z1ᵀ z2 / n`` and the loss
    ``sum_i (1 - C_ii)² + lambda sum_{i != j} C_ij²`` with ``lambda = 1 / d`` (the paper's
    default for ``d`` dimensions): the invariance term makes each dimension agree across
    views, the redundancy term decorrelates the dimensions. The embedding is the encoder
    output on the unaugmented graph. A batch needs at least two seeds.

    Args:
        encoder: the GNN; its last layer is plain.
        edge_drop: fraction of edges dropped in view 1 and view 2.
        feature_mask: fraction of feature columns (or entries) masked in view 1 and view 2.
        feature_masking: ``"columns"`` or ``"entries"`` (see :mod:`agc_cli.models.augment`).

    Paper: https://arxiv.org/abs/2106.02466
    """

    name = "gbt"
    paper = "https://arxiv.org/abs/2106.02466"

    def __init__(
        self,
        encoder: Encoder,
        edge_drop: Sequence[float] = (0.2, 0.2),
        feature_mask: Sequence[float] = (0.2, 0.2),
        feature_masking: str = "columns",
    ):
        super().__init__()
        self.encoder = encoder
        self.edge_drop = tuple(edge_drop)
        self.feature_mask = tuple(feature_mask)
        self.feature_masking = feature_masking

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> GraphBarlowTwins:
        return cls(
            Encoder.from_settings(in_channels, settings, plain_last=True),
            edge_drop=settings.edge_drop,
            feature_mask=settings.feature_mask,
            feature_masking=settings.feature_masking,
        )

    def loss(self, batch: GraphBatch) -> LossOutput:
        z1, z2 = two_views(self, batch)
        invariance, redundancy = barlow_twins_terms(z1, z2)
        weight = 1.0 / z1.shape[1]
        return LossOutput(
            invariance + weight * redundancy,
            {"invariance": invariance.detach(), "redundancy": redundancy.detach()},
        )


def barlow_twins_terms(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum_i (1 - C_ii)², sum_{i != j} C_ij²)`` for the cross-correlation ``C`` of the
    per-dimension standardised ``z1`` and ``z2``."""
    n = z1.shape[0]
    c = _standardise(z1).T @ _standardise(z2) / n
    diagonal = torch.diagonal(c)
    invariance = (1 - diagonal).pow(2).sum()
    redundancy = c.pow(2).sum() - diagonal.pow(2).sum()
    return invariance, redundancy


def _standardise(z: Tensor) -> Tensor:
    # The population standard deviation, so identical decorrelated views give C = I exactly;
    # the epsilon keeps a constant dimension (std 0) finite.
    return (z - z.mean(dim=0)) / (z.std(dim=0, unbiased=False) + 1e-8)
