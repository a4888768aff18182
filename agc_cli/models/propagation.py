"""Training-free methods that propagate the features over the graph: SGC and SSGC.

Both are a fixed polynomial in a normalised adjacency applied to the features,
``sum_k w_k P^k X``, with no weights to learn: ``agc run`` skips training and ``agc infer``
computes the embeddings directly. :class:`FeaturePropagation` plays the encoder's part, so the
same code serves full-batch embedding and exact layer-wise inference (one propagation step per
"layer").

- SGC (Wu et al., ICML 2019, https://arxiv.org/abs/1902.07153): ``Â^K X``.
- SSGC (Zhu & Koniusz, ICLR 2021, https://openreview.net/forum?id=CYO5T-YjWZV):
  ``1/K sum_{k=1..K} ((1 - alpha) Â^k X + alpha X)``.

``Â = D̃^-1/2 (A + I) D̃^-1/2`` with ``D̃`` the degrees counting the self-loop.

Memory: the embeddings are as wide as the features. Full-batch holds about three dense
``[nodes, features]`` matrices (the current power, the running sum, the next power); sparse
bag-of-words features are densified once, on the first propagation step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agc_cli.errors import UsageError
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import Block, Features, GraphBatch
from agc_cli.models.sparse import SparseMatrix

OPERATORS = ("gcn", "rw")


def propagate(h: Tensor, block: Block, operator: str = "gcn") -> Tensor:
    """One step ``P h`` for the block's destinations, self-loops included.

    Args:
        h: ``[num_src, channels]`` rows of the block's sources, destinations first.
        operator: ``gcn`` for ``D̃^-1/2 (A + I) D̃^-1/2`` or ``rw`` for the random walk
            ``D̃^-1 (A + I)``.
    """
    own = h[: block.num_dst]
    if operator == "gcn":
        return block.adjacency("gcn").matmul(h) + block.gcn_self_weight() * own
    # Block.adjacency leaves self-loops out, so the node's own row is added here.
    total = block.adjacency("sum").matmul(h) + own
    return total / (block.degree[: block.num_dst, None] + 1)


def check_num_layers(num_layers: int) -> None:
    """Refuse a propagation without any step."""
    if num_layers < 1:
        raise UsageError(f"num_layers: must be at least 1 (got {num_layers})")


class FeaturePropagation(nn.Module):
    """``sum_{k=0..K} weights[k] P^k X``, one power of ``P`` per layer.

    Follows the :class:`~agc_cli.models.encoder.Encoder` per-layer API, so
    :func:`agc_cli.engine.inference.layerwise` runs it exactly on graphs too large for
    full-batch. A layer's output is ``[P^k X | running sum]`` side by side (just ``P^k X``
    when only the last weight is non-zero, as in SGC); the last layer outputs the sum itself,
    so no layer but the last is needed at the end (``needs_all_layers`` is False).

    Args:
        num_layers: the highest power ``K`` (at least 1).
        weights: ``K + 1`` coefficients, for ``P^0 X`` first.
        operator: ``gcn`` or ``rw`` (see :func:`propagate`).
        normalize_input: L2-normalise every feature row before propagating.
    """

    jk = "none"
    needs_all_layers = False

    def __init__(
        self,
        num_layers: int,
        weights: Sequence[float],
        operator: str = "gcn",
        normalize_input: bool = False,
    ):
        super().__init__()
        check_num_layers(num_layers)
        if len(weights) != num_layers + 1:
            raise ValueError(f"expected {num_layers + 1} weights, got {len(weights)}")
        if operator not in OPERATORS:
            raise ValueError(f"unknown operator {operator!r}")
        self.num_layers = num_layers
        self.weights = [float(w) for w in weights]
        self.operator = operator
        self.normalize_input = normalize_input
        self.carries_sum = any(w != 0 for w in self.weights[:-1])

    def layer_forward(self, i: int, x_src: Features, block: Block) -> Tensor:
        """Propagation step ``i``: ``[num_src, ·]`` layer inputs -> ``[num_dst, ·]`` outputs."""
        if i == 0:
            h = self._input(x_src)
            acc = self.weights[0] * h[: block.num_dst] if self.carries_sum else None
        elif self.carries_sum:
            h, acc = x_src.chunk(2, dim=1)
        else:
            h, acc = x_src, None
        step = propagate(h, block, self.operator)
        weight = self.weights[i + 1]
        last = i == self.num_layers - 1
        if acc is None:
            return weight * step if last else step
        acc = acc[: block.num_dst] + weight * step
        return acc if last else torch.cat([step, acc], dim=1)

    def combine(self, outputs: list[Tensor]) -> Tensor:
        """The last layer's output is already the embedding."""
        return outputs[-1]

    def forward(self, x: Features, batch: GraphBatch) -> Tensor:
        """The propagated features of the batch's seed nodes (every node in full-batch)."""
        h = x
        for i in range(self.num_layers):
            h = self.layer_forward(i, h, batch.block(i, self.num_layers))
        return h

    def _input(self, x: Features) -> Tensor:
        # Propagation fills in the zeros of bag-of-words rows, so the result is dense anyway.
        h = x.to_dense() if isinstance(x, SparseMatrix) else x
        return F.normalize(h, dim=1) if self.normalize_input else h


class TrainingFreeModel(ClusteringModel):
    """A method with nothing to train: ``agc run`` skips training, ``agc infer`` embeds."""

    trainable = False

    def loss(self, batch: GraphBatch) -> LossOutput:
        raise UsageError(f"{self.name} needs no training; use agc run or agc infer")


class SGC(TrainingFreeModel):
    """Simplified graph convolution without its classifier: ``Â^K X`` (``K = num_layers``).

    Paper: https://arxiv.org/abs/1902.07153
    """

    name = "sgc"
    paper = "https://arxiv.org/abs/1902.07153"

    def __init__(self, num_layers: int):
        super().__init__()
        self.encoder = FeaturePropagation(num_layers, [0.0] * num_layers + [1.0])

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> SGC:
        return cls(settings.num_layers)


class SSGC(TrainingFreeModel):
    """Simple spectral graph convolution: ``1/K sum_k ((1 - alpha) Â^k X + alpha X)``.

    A Markov-diffusion average over ``K = num_layers`` propagation steps; ``alpha`` keeps part
    of every node's own features in each term, which lets ``K`` grow without oversmoothing.

    Paper: https://openreview.net/forum?id=CYO5T-YjWZV
    """

    name = "ssgc"
    paper = "https://openreview.net/forum?id=CYO5T-YjWZV"

    def __init__(self, num_layers: int, alpha: float):
        super().__init__()
        if not 0 <= alpha <= 1:
            raise UsageError(f"alpha: SSGC's teleport weight must be in [0, 1] (got {alpha})")
        check_num_layers(num_layers)
        self.alpha = alpha
        term = (1 - alpha) / num_layers
        self.encoder = FeaturePropagation(num_layers, [alpha] + [term] * num_layers)

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> SSGC:
        return cls(settings.num_layers, settings.alpha)
