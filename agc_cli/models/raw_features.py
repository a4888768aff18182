"""The k-means baseline: cluster the raw node features, ignoring the graph."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from agc_cli.models.batch import Block, Features, GraphBatch
from agc_cli.models.propagation import TrainingFreeModel
from agc_cli.models.sparse import SparseMatrix


class RawFeatures(nn.Module):
    """The identity as a one-layer encoder: each node's own feature row, densified.

    Follows the :class:`~agc_cli.models.encoder.Encoder` per-layer API so layer-wise inference
    embeds graphs in batches of nodes; only the destination rows are densified, never the
    whole sparse feature matrix at once in a batch.
    """

    num_layers = 1
    jk = "none"
    needs_all_layers = False

    def layer_forward(self, i: int, x_src: Features, block: Block) -> Tensor:
        """The destinations' rows (the first ``num_dst`` of the sources)."""
        if isinstance(x_src, SparseMatrix):
            if block.num_dst == x_src.shape[0]:
                return x_src.to_dense()
            return x_src.rows(torch.arange(block.num_dst, device=x_src.device)).to_dense()
        return x_src[: block.num_dst]

    def combine(self, outputs: list[Tensor]) -> Tensor:
        return outputs[-1]

    def forward(self, x: Features, batch: GraphBatch) -> Tensor:
        """The seed nodes' feature rows (every node in full-batch)."""
        return self.layer_forward(0, x, batch.block(0, 1))


class KMeansBaseline(TrainingFreeModel):
    """k-means on the node features as stored (bag-of-words rows row-normalised by the
    loader), the reference row of every benchmark table.

    The embedding is the feature matrix itself, as wide as the features; the preset
    L2-normalises it before k-means, as PyAGC's baseline does.

    Paper: https://doi.org/10.1109/TIT.1982.1056489
    """

    name = "kmeans"
    paper = "https://doi.org/10.1109/TIT.1982.1056489"

    def __init__(self) -> None:
        super().__init__()
        self.encoder = RawFeatures()

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> KMeansBaseline:
        return cls()
