"""CCA-SSG (Zhang et al., NeurIPS 2021), https://arxiv.org/abs/2106.12484."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from agc_cli.models.augment import two_views
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


class CCASSG(ClusteringModel):
    """Canonical correlation analysis between two augmented views.

    Each view masks a random fraction of feature columns and drops a random fraction of
    edges. With per-dimension standardised embeddings ``z1, z2`` of ``n`` nodes, the loss is
    ``-trace(z1ᵀ z2) / n`` (invariance) plus ``lambd`` times ``||I - z1ᵀ z1 / n||² +
    ||I - z2ᵀ z2 / n||²`` (decorrelation). The embedding is the encoder output on the
    unaugmented graph. In a sampled batch, ``n`` is the number of seeds.

    Args:
        encoder: the GNN; its last layer is plain (no activation), as in the paper's code.
        lambd: weight of the decorrelation terms (the paper's code and PyAGC use 1e-3).
        feature_mask: fraction of feature columns (or entries) masked in view 1 and view 2.
        feature_masking: ``"columns"`` or ``"entries"`` (see :mod:`agc_cli.models.augment`).
        edge_drop: fraction of edges dropped in view 1 and view 2.

    Paper: https://arxiv.org/abs/2106.12484
    """

    name = "ccassg"
    paper = "https://arxiv.org/abs/2106.12484"

    def __init__(
        self,
        encoder: Encoder,
        lambd: float = 1e-3,
        feature_mask: Sequence[float] = (0.1, 0.1),
        feature_masking: str = "columns",
        edge_drop: Sequence[float] = (0.4, 0.4),
    ):
        super().__init__()
        self.encoder = encoder
        self.lambd = lambd
        self.feature_mask = tuple(feature_mask)
        self.feature_masking = feature_masking
        self.edge_drop = tuple(edge_drop)

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> CCASSG:
        return cls(
            Encoder.from_settings(in_channels, settings, plain_last=True),
            lambd=settings.lambd,
            feature_mask=settings.feature_mask,
            feature_masking=settings.feature_masking,
            edge_drop=settings.edge_drop,
        )

    def loss(self, batch: GraphBatch) -> LossOutput:
        z1, z2 = (_standardise(z) for z in two_views(self, batch))
        n = z1.shape[0]
        eye = torch.eye(z1.shape[1], device=z1.device)
        invariance = -torch.sum(z1 * z2) / n
        decorrelation = (eye - z1.T @ z1 / n).pow(2).sum() + (eye - z2.T @ z2 / n).pow(2).sum()
        return LossOutput(
            invariance + self.lambd * decorrelation,
            {"invariance": invariance.detach(), "decorrelation": decorrelation.detach()},
        )


def _standardise(z: Tensor) -> Tensor:
    return (z - z.mean(dim=0)) / z.std(dim=0)
