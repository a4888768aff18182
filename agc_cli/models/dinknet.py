"""Dink-Net (Liu et al., ICML 2023), https://arxiv.org/abs/2305.18405."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agc_cli.data.graph import Graph
from agc_cli.models import rng
from agc_cli.models.base import ClusteringModel, LossOutput, cluster_count
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder

# Training phases, kept in the state dict: discrimination only; clustering, centres not yet
# initialised; clustering.
PRETRAIN, CLUSTER_INIT, CLUSTER = 0, 1, 2


class DinkNet(ClusteringModel):
    """Dilation shrink network: discriminative pretraining, then learnable cluster centres.

    **Pretraining** (the first ``pretrain_epochs`` epochs) is DGI-like without a summary: a
    linear projector maps each embedding, the sum of the projected channels is a node's logit,
    and binary cross-entropy tells the clean graph's nodes (label 1) from those of a graph with
    shuffled feature rows (label 0). The corrupted pass reuses the clean first-layer transform
    with its rows permuted (see :class:`~agc_cli.models.dgi.DGI`).

    **Clustering.** At the switch the ``k`` centres ``C`` are initialised by k-means on the
    batch's embeddings ``z`` (L2-normalised encoder outputs); then the loss is
    ``dilation + shrink + alpha * discrimination`` with

    - dilation ``-mean_{i != j} ||C_i - C_j||²``, pushing the centres apart;
    - shrink ``mean_{n, k} ||z_n - C_k||²`` over every node and every centre (the paper's
      form), pulling the nodes and centres together.

    Both are averages over the batch's seeds and the ``k`` centres, so a mini-batch step
    costs ``O(batch · k · d)``: linear in the batch, independent of the graph.

    The embedding is ``z``; agc's k-means clusters it (the paper assigns each node to its
    nearest centre, which k-means' assignment step also does). The original code adds a
    propagated copy ``Â^p z`` to the embedding at inference; agc's embedding is ``z`` only.

    Args:
        encoder: the GNN (its last layer has an activation, as in the paper).
        n_clusters: number of clusters ``k``.
        pretrain_epochs: epochs of discrimination only.
        alpha: weight of the discrimination loss after pretraining.

    Paper: https://arxiv.org/abs/2305.18405
    """

    name = "dinknet"
    paper = "https://arxiv.org/abs/2305.18405"

    # The centres get no gradient while pretraining (data-parallel training must know).
    ddp_find_unused_parameters = True

    def __init__(
        self, encoder: Encoder, n_clusters: int, pretrain_epochs: int = 0, alpha: float = 1.0
    ):
        super().__init__()
        self.encoder = encoder
        self.n_clusters = n_clusters
        self.pretrain_epochs = pretrain_epochs
        self.alpha = alpha
        channels = encoder.out_channels
        self.projector = nn.Linear(channels, channels)
        self.centres = nn.Parameter(torch.zeros(n_clusters, channels))
        self.phase = PRETRAIN

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> DinkNet:
        n_clusters = cluster_count("Dink-Net", settings, num_classes)
        return cls(
            Encoder.from_settings(in_channels, settings),
            n_clusters,
            pretrain_epochs=settings.pretrain_epochs,
            alpha=settings.alpha,
        )

    def readout(self, h: Tensor) -> Tensor:
        return F.normalize(h, dim=-1)

    def begin_epoch(self, epoch: int, graph: Graph) -> None:
        """Switch to the clustering loss once ``pretrain_epochs`` epochs are done."""
        if self.phase == PRETRAIN and epoch >= self.pretrain_epochs:
            self.phase = CLUSTER_INIT

    def loss(self, batch: GraphBatch) -> LossOutput:
        t = self.encoder.transform(0, batch.x)
        h = self.encoder.forward_transformed(t, batch)
        perm = rng.randperm(t.shape[0], t.device, self.generator)
        corrupted = self.encoder.forward_transformed(t, batch, source_perm=perm)
        pos = self.projector(h).sum(dim=-1)
        neg = self.projector(corrupted).sum(dim=-1)
        # BCE with logits against 1 (clean) and 0 (corrupted), averaged over both halves.
        discrimination = (F.softplus(-pos).mean() + F.softplus(neg).mean()) / 2
        if self.phase == PRETRAIN:
            return LossOutput(discrimination, {"discrimination": discrimination.detach()})
        z = self.readout(h)
        if self.phase == CLUSTER_INIT:
            self._init_centres(z.detach())
        dilation = dilation_loss(self.centres)
        shrink = shrink_loss(z, self.centres)
        return LossOutput(
            dilation + shrink + self.alpha * discrimination,
            {
                "dilation": dilation.detach(),
                "shrink": shrink.detach(),
                "discrimination": discrimination.detach(),
            },
        )

    def _init_centres(self, z: Tensor) -> None:
        self.fit_centres(self.centres, z)
        self.phase = CLUSTER

    def get_extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_extra_state()
        state["phase"] = torch.tensor(self.phase)
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.phase = int(state["phase"])


def dilation_loss(centres: Tensor) -> Tensor:
    """``-mean_{i != j} ||C_i - C_j||²``: more negative as the centres spread."""
    k = centres.shape[0]
    # Differences, not the |a|² + |b|² - 2ab expansion, so the diagonal is exactly zero and the
    # off-diagonal mean is the full sum over k (k - 1) pairs; k x k x d is small.
    squared = (centres[:, None, :] - centres[None, :, :]).pow(2).sum(-1)
    return -squared.sum() / max(k * (k - 1), 1)


def shrink_loss(z: Tensor, centres: Tensor) -> Tensor:
    """``mean_{n, k} ||z_n - C_k||²`` over every row and every centre.

    Expanded as ``mean ||z||² + mean ||C||² - 2 mean(z) . mean(C)``: exact, in ``O((n + k) d)``
    without the ``n x k`` distance matrix.
    """
    return (
        z.pow(2).sum(-1).mean()
        + centres.pow(2).sum(-1).mean()
        - 2 * z.mean(dim=0) @ centres.mean(dim=0)
    )
