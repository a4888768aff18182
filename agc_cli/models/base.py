"""The contract between a clustering method and the trainer.

A method is a :class:`ClusteringModel`: it builds itself from the settings, owns its objective
(:meth:`~ClusteringModel.loss`, PyG style) and says how to embed nodes. The same code serves
full-batch and mini-batch training: both hand it a :class:`~agc_cli.models.batch.GraphBatch`,
and the loss is over the batch's seed nodes, averaged per example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from agc_cli.data.graph import Graph
from agc_cli.errors import UsageError
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


def cluster_count(method: str, settings: Any, num_classes: int | None) -> int:
    """``settings.n_clusters``, else the number of label classes; a method that needs a cluster
    count on unlabelled data without ``n_clusters`` is a usage error naming the setting."""
    n_clusters = settings.n_clusters or num_classes
    if n_clusters is None:
        raise UsageError(
            f"n_clusters: {method} needs the number of clusters and the graph has no labels to "
            "count them; set n_clusters"
        )
    return int(n_clusters)


@dataclass
class LossOutput:
    """A training objective's value.

    Attributes:
        loss: scalar to minimise.
        parts: detached components for logging (e.g. ``{"pos": ..., "neg": ...}``).
    """

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


class ClusteringModel(nn.Module, ABC):
    """Base class of every method.

    Subclasses set ``name`` (the registry key) and ``paper`` (URL), hold their GNN in
    ``self.encoder`` and implement :meth:`from_settings` and :meth:`loss`. Randomness the
    objective draws (corruptions, negative pairs, augmentations) comes from ``self.generator``
    when set, otherwise from torch's global RNG; the generator's state is part of
    :meth:`state_dict`, like every other piece of state needed to resume.

    Embeddings are ``readout(encoder(...))`` with a node-wise :meth:`readout`, so layer-wise
    inference can run the encoder one layer at a time and apply :meth:`readout` at the end.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    encoder: Encoder

    def __init__(self) -> None:
        super().__init__()
        self.generator: torch.Generator | None = None

    @classmethod
    @abstractmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> ClusteringModel:
        """Build the model; ``n_clusters`` defaults to ``num_classes`` where a method needs it."""

    @abstractmethod
    def loss(self, batch: GraphBatch) -> LossOutput:
        """The objective on the batch's seed nodes, averaged per example."""

    def readout(self, h: Tensor) -> Tensor:
        """Node-wise map from encoder output to embedding (identity unless overridden)."""
        return h

    def embed(self, batch: GraphBatch) -> Tensor:
        """Embeddings of the batch's seed nodes (every node in full-batch)."""
        return self.readout(self.encoder(batch.x, batch))

    def begin_epoch(self, epoch: int, graph: Graph) -> None:
        """Called by the trainer before each epoch (e.g. to refresh targets); no-op here."""

    def seed_batches(
        self, graph: Graph, batch_size: int, generator: torch.Generator
    ) -> Iterator[Tensor] | None:
        """The epoch's mini-batch seed nodes, or None for the trainer's random permutation.

        Must be a pure function of ``generator``'s state, so a resumed epoch replays it.
        """
        return None

    def get_extra_state(self) -> dict[str, Tensor]:
        if self.generator is None:
            return {}
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])
