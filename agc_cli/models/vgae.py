"""Variational graph auto-encoder (Kipf & Welling, 2016), https://arxiv.org/abs/1611.07308."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agc_cli.errors import UsageError
from agc_cli.models import rng
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder
from agc_cli.models.gae import GAE, edge_reconstruction

# Upper bound of log sigma, so exp(log sigma) stays finite early in training (PyG's value).
MAX_LOGSTD = 10.0


def reconstruction(z: Tensor, batch: GraphBatch, generator: torch.Generator | None) -> Tensor:
    """GAE's loss: BCE of ``sigmoid(z_i . z_j)`` on the edges between seeds and as many
    uniformly drawn seed pairs (zero without edges)."""
    pos_loss, neg_loss = edge_reconstruction(z, batch, generator)
    return pos_loss + neg_loss


def _check_even_width(name: str, encoder: Encoder) -> None:
    if encoder.out_channels % 2:
        raise UsageError(
            f"hidden_channels: {name} splits the output into mean and log-deviation halves; "
            f"use an even width (got {encoder.out_channels})"
        )


def kl_divergence(mu: Tensor, logstd: Tensor) -> Tensor:
    """``KL(N(mu, sigma²) || N(0, I))`` per node, summed over dimensions, averaged over nodes."""
    return -0.5 * torch.mean(torch.sum(1 + 2 * logstd - mu.pow(2) - logstd.exp().pow(2), dim=1))


class VGAE(ClusteringModel):
    """Variational graph auto-encoder.

    The encoder's plain last layer outputs ``2d`` channels, read as ``[mu | log sigma]``: one
    GCN (or other) layer for both heads, which is the paper's two heads side by side. The
    latent ``z = mu + sigma * eps`` (``eps`` from ``self.generator``) is decoded by GAE's inner
    product; the loss is GAE's reconstruction plus ``KL / N`` (``N`` the graph's node count,
    the paper's weighting of a per-node KL against a per-pair reconstruction). The embedding
    is ``mu``. ``hidden_channels`` must be even (``d`` is half of it).

    In a sampled batch the terms run over the seeds, with GAE's edge-endpoint seed batches.

    Paper: https://arxiv.org/abs/1611.07308
    """

    name = "vgae"
    paper = "https://arxiv.org/abs/1611.07308"

    def __init__(self, encoder: Encoder):
        super().__init__()
        _check_even_width(self.name, encoder)
        self.encoder = encoder
        self.latent_channels = encoder.out_channels // 2

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> VGAE:
        return cls(Encoder.from_settings(in_channels, settings, plain_last=True))

    seed_batches = GAE.seed_batches

    def readout(self, h: Tensor) -> Tensor:
        """``mu``: the latent's mean."""
        return h[:, : self.latent_channels]

    def latent(self, batch: GraphBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """``(z, {"kl": ...})``: the reparameterised latent of the seeds and its KL term."""
        h = self.encoder(batch.x, batch)
        mu, logstd = h.split(self.latent_channels, dim=1)
        logstd = logstd.clamp(max=MAX_LOGSTD)
        kl = kl_divergence(mu, logstd) / batch.total_nodes
        if not self.training:
            return mu, {"kl": kl}
        eps = rng.normal(tuple(mu.shape), mu.device, self.generator)
        return mu + eps * logstd.exp(), {"kl": kl}

    def loss(self, batch: GraphBatch) -> LossOutput:
        z, terms = self.latent(batch)
        recon = reconstruction(z, batch, self.generator)
        return LossOutput(
            recon + terms["kl"],
            {"reconstruction": recon.detach(), "kl": terms["kl"].detach()},
        )
