"""The contract between a clustering method and the trainer.

A method is a :class:`ClusteringModel`: it builds itself from the settings, owns its objective
(:meth:`~ClusteringModel.loss`, PyG style) and says how to embed nodes. The same code serves
full-batch and mini-batch training: both hand it a :class:`~agc_cli.models.batch.GraphBatch`,
and the loss is over the batch's seed nodes, averaged per example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from agc_cli.data.graph import Graph
from agc_cli.errors import UsageError
from agc_cli.models import rng
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder


@dataclass(frozen=True)
class Tools:
    """What some methods need from the layers beside ``models/``, bound by the engine when it
    builds a model (:func:`agc_cli.engine.session.build_model`), so that ``models/`` imports
    neither ``sampling/`` nor ``cluster/``.

    Attributes:
        kmeans: ``(points [n, d], k, seed) -> centroids [k, d]`` (DAEGC's and Dink-Net's
            initial cluster centres).
        random_walk: ``(colptr, row, start, length, generator) -> [len(start), length + 1]``
            node ids of uniform random walks over a CSC topology (MAGI).
    """

    kmeans: Callable[[Tensor, int, int], Tensor]
    random_walk: Callable[..., Tensor]


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
        self.tools: Tools | None = None  # bound by the engine (see Tools)

    def tool(self, name: str) -> Callable[..., Any]:
        """The engine-bound tool ``name`` (see :class:`Tools`)."""
        if self.tools is None:
            raise RuntimeError(
                f"{self.name}: built without the engine's tools (needs {name}); build models "
                "with agc_cli.engine.session.build_model"
            )
        return getattr(self.tools, name)

    def fit_centres(self, centres: nn.Parameter, z: Tensor) -> None:
        """Set ``centres`` to k-means centroids of the embeddings ``z`` (seeded from
        ``self.generator``); data-parallel ranks all take rank 0's."""
        seed = int(rng.randint(2**31 - 1, (1,), z.device, self.generator))
        fitted = self.tool("kmeans")(z, centres.shape[0], seed)
        with torch.no_grad():
            centres.copy_(fitted.to(centres))
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(centres.data, src=0)

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
