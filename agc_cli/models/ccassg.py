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
        invariance, decorrelation = cca_terms(*two_views(self, batch))
        return LossOutput(
            invariance + self.lambd * decorrelation,
            {"invariance": invariance.detach(), "decorrelation": decorrelation.detach()},
        )


def cca_terms(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """``(-trace(s1ᵀ s2) / n, ||I - s1ᵀ s1 / n||² + ||I - s2ᵀ s2 / n||²)`` for the
    per-dimension standardised views ``s = (z - mean) / std`` (``std`` unbiased).

    Computed from each view's centred Gram matrix ``cᵀc`` (``c = z - mean``): since
    ``sᵀs = cᵀc / (σ σᵀ)`` and ``σ² = diag(cᵀc) / (n - 1)``, the standardised views are never
    built, and each Gram matrix costs one product forward and one backward
    (:class:`_Gram`), where autograd through ``sᵀ @ s`` takes two — about a third of a
    CCA-SSG step on Cora went to the standardisation and those products.
    """
    n = z1.shape[0]
    c1, c2 = z1 - z1.mean(dim=0), z2 - z2.mean(dim=0)
    g1, g2 = _Gram.apply(c1), _Gram.apply(c2)
    sd1, sd2 = (torch.diagonal(g).div(n - 1).sqrt() for g in (g1, g2))
    invariance = -((c1 * c2).sum(dim=0) / (sd1 * sd2)).sum() / n
    eye = torch.eye(z1.shape[1], device=z1.device, dtype=g1.dtype)
    decorrelation = sum(
        (eye - g / (sd[:, None] * sd[None, :] * n)).pow(2).sum() for g, sd in ((g1, sd1), (g2, sd2))
    )
    return invariance, decorrelation


class _Gram(torch.autograd.Function):
    """``cᵀ c`` whose backward is the one product ``c (G + Gᵀ)``."""

    @staticmethod
    def forward(ctx, c: Tensor) -> Tensor:
        ctx.save_for_backward(c)
        return c.T @ c

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (c,) = ctx.saved_tensors
        return c @ (grad + grad.T)
