"""Deep Graph Infomax (Veličković et al., ICLR 2019), https://arxiv.org/abs/1809.10341."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agc_cli.models import rng
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


class DGI(ClusteringModel):
    """Deep Graph Infomax: maximise mutual information between node embeddings and a summary.

    A bilinear discriminator scores node embeddings against the summary
    ``sigmoid(mean of the embeddings)``; the negatives are the embeddings of a corrupted graph
    whose feature rows are shuffled. Since the encoder's first transform is row-wise, the
    corrupted pass reuses the clean transform with its rows permuted (for GCN, the first layer
    of both passes is one product with the adjacency stacked on a copy with its columns
    permuted, see ``Encoder.forward_pair``).

    In a sampled batch the summary is the mean over the seeds and the shuffle permutes the
    features of all sampled nodes.

    Paper: https://arxiv.org/abs/1809.10341
    """

    name = "dgi"
    paper = "https://arxiv.org/abs/1809.10341"

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        channels = encoder.out_channels
        self.weight = nn.Parameter(torch.empty(channels, channels))
        # PyG's DeepGraphInfomax initialisation.
        bound = 1.0 / math.sqrt(channels)
        nn.init.uniform_(self.weight, -bound, bound)

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> DGI:
        return cls(Encoder.from_settings(in_channels, settings))

    def loss(self, batch: GraphBatch) -> LossOutput:
        perm = rng.randperm(batch.x.shape[0], batch.device, self.generator)
        pos, neg = self.encoder.forward_pair(batch.x, batch, perm)
        summary = torch.sigmoid(pos.mean(dim=0))
        w = self.weight @ summary
        # softplus(-s) = -log(sigmoid(s)): PyG's loss without its log epsilon.
        pos_loss = F.softplus(-(pos @ w)).mean()
        neg_loss = F.softplus(neg @ w).mean()
        return LossOutput(pos_loss + neg_loss, {"pos": pos_loss.detach(), "neg": neg_loss.detach()})
