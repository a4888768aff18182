"""NAFS: node-adaptive feature smoothing (ICML 2022).

Zhang, Sheng, Yang, Li, Shen, Yang & Cui, "NAFS: A Simple yet Tough-to-beat Baseline for Graph
Representation Learning", https://arxiv.org/abs/2206.08583. Training-free:

1. Smoothed features ``X^(k) = Â_r^k X`` for ``k = 0..K`` (``K = num_layers``) with
   ``Â_r = D̃^(r-1) Ã D̃^(-r)`` (``Ã = A + I``; ``r = 0.5`` is GCN's operator, ``r = 0`` the
   random walk).
2. Each node's over-smoothing distance at every hop, ``D_i(k) = ‖X^(k)_i - X^(∞)_i‖``, to the
   stationary state ``Â_r^∞ X``: ``[Â_r^∞]_ij = d̃_i^r d̃_j^(1-r) / Σ_l d̃_l``, so
   ``X^(∞)_i = d̃_i^r g`` with one vector ``g = Σ_j d̃_j^(1-r) X_j / Σ_l d̃_l``.
3. Node-adaptive weights ``w_i(k) = softmax_k D_i(k)``: a hop that is still far from the
   over-smoothed state weighs more, so a node that smooths out fast (a hub) keeps its early
   hops. The embedding of node ``i`` is ``Σ_k w_i(k) X^(k)_i``.
4. Feature ensemble: steps 1-3 for several ``r`` (``r_list``), concatenated, averaged or
   maximised per entry (``ensemble``).

PyAGC's NAFS measures the distance to the original features (cosine) instead of to the
stationary state; agc follows the paper.

Scaling: the weights need ``g``, a sum over every node, before the first hop, so NAFS embeds
full-batch only (a layer-wise batch cannot see ``g``). Per ``r`` it holds three dense
``[nodes, features]`` matrices (the current hop, the next, the weighted sum), combined with an
online softmax, so no hop is kept; ``concat`` adds the ``len(r_list)`` results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from agc_cli.errors import UsageError
from agc_cli.models.batch import Block, Features, GraphBatch
from agc_cli.models.propagation import TrainingFreeModel, check_num_layers
from agc_cli.models.sparse import SparseMatrix

ENSEMBLES = ("concat", "mean", "max")


def propagate_normalised(h: Tensor, block: Block, r: float) -> Tensor:
    """One step ``D̃^(r-1) Ã D̃^(-r) h`` for the block's destinations, self-loops included."""
    degree = block.degree + 1
    scaled = h * degree.pow(-r)[:, None]
    total = block.adjacency("sum").matmul(scaled) + scaled[: block.num_dst]
    return total * degree[: block.num_dst].pow(r - 1)[:, None]


def stationary_direction(x: Tensor, degree: Tensor, r: float) -> Tensor:
    """``g`` with ``[Â_r^∞ X]_i = d̃_i^r g``: ``Σ_j d̃_j^(1-r) X_j / Σ_j d̃_j`` (``d̃ = degree + 1``,
    the walk's limit on a connected graph)."""
    d = degree + 1
    return d.pow(1 - r) @ x / d.sum()


class AdaptiveSmoothing(nn.Module):
    """Steps 1-4 of the module docstring on the whole graph.

    Args:
        num_layers: ``K``, the highest hop.
        r_list: the operators' exponents ``r``, one smoothing per value.
        ensemble: ``concat``, ``mean`` or ``max`` over the smoothings.
    """

    jk = "none"
    needs_all_layers = False

    def __init__(self, num_layers: int, r_list: Sequence[float], ensemble: str):
        super().__init__()
        check_num_layers(num_layers)
        if not r_list:
            raise UsageError("r_list: NAFS needs at least one operator exponent r")
        if ensemble not in ENSEMBLES:
            raise UsageError(f"ensemble: one of {', '.join(ENSEMBLES)} (got {ensemble!r})")
        self.num_layers = num_layers
        self.r_list = [float(r) for r in r_list]
        self.ensemble = ensemble

    def forward(self, x: Features, batch: GraphBatch) -> Tensor:
        """The NAFS embedding of every node (``batch`` must be the full graph)."""
        if not batch.is_full:
            raise self._needs_full_batch()
        h = x.to_dense() if isinstance(x, SparseMatrix) else x
        block = batch.block(0, 1)
        results = [self.smooth(h, block, r) for r in self.r_list]
        if self.ensemble == "concat":
            return torch.cat(results, dim=1)
        stacked = torch.stack(results)
        return stacked.mean(0) if self.ensemble == "mean" else stacked.amax(0)

    def smooth(self, x: Tensor, block: Block, r: float) -> Tensor:
        """``Σ_k w_i(k) X^(k)_i`` for one ``r``, the softmax accumulated hop by hop."""
        scale = (block.degree + 1).pow(r)  # X^(∞)_i = scale_i g
        g = stationary_direction(x, block.degree, r)
        g_norm = g @ g
        h, total, top, acc = x, None, None, None
        for k in range(self.num_layers + 1):
            if k > 0:
                h = propagate_normalised(h, block, r)
            # ‖h_i - scale_i g‖ without the [nodes, features] stationary matrix.
            squared = h.square().sum(1) - 2 * scale * (h @ g) + scale.square() * g_norm
            distance = squared.clamp(min=0).sqrt()
            if acc is None:
                top, total, acc = distance, torch.ones_like(distance), h.clone()
                continue
            # Online softmax: rescale what is summed so far whenever a node's maximum grows.
            new_top = torch.maximum(top, distance)
            old, new = (top - new_top).exp(), (distance - new_top).exp()
            acc = acc * old[:, None] + new[:, None] * h
            total = total * old + new
            top = new_top
        return acc / total[:, None]

    def layer_forward(self, i: int, x_src: Features, block: Block) -> Tensor:
        raise self._needs_full_batch()

    def combine(self, outputs: list[Tensor]) -> Tensor:
        return outputs[-1]

    @staticmethod
    def _needs_full_batch() -> UsageError:
        return UsageError(
            "nafs: its smoothing weights need the stationary state of the whole graph; embed "
            "full-batch (force_full_batch_inference: true, --device cpu if the GPU is too small)"
        )


class NAFS(TrainingFreeModel):
    """Node-adaptive feature smoothing: each node weights its smoothed features over the hops
    by their distance to the over-smoothed state.

    Args:
        num_layers: ``K``, the highest hop.
        r_list: exponents ``r`` of the operators ``D̃^(r-1) Ã D̃^(-r)``, one smoothing each.
        ensemble: how the smoothings combine: ``concat``, ``mean`` or ``max``.

    Paper: https://arxiv.org/abs/2206.08583
    """

    name = "nafs"
    paper = "https://arxiv.org/abs/2206.08583"

    def __init__(self, num_layers: int, r_list: Sequence[float], ensemble: str = "concat"):
        super().__init__()
        self.encoder = AdaptiveSmoothing(num_layers, r_list, ensemble)

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> NAFS:
        return cls(settings.num_layers, settings.r_list, settings.ensemble)
