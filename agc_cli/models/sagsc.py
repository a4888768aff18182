"""SAGSC: scalable attributed-graph subspace clustering (AAAI 2023).

Fettal, Labiod & Nadif, "Scalable Attributed-Graph Subspace Clustering",
https://ojs.aaai.org/index.php/AAAI/article/view/25918. Training-free:

1. Smoothed features ``H = Â^p X̂`` (SGC's propagation, ``p = num_layers``) of the
   L2-normalised feature rows ``X̂``, as the authors' preprocessing normalises them.
2. A low-rank self-expression ``C = U Uᵀ`` with ``U`` the top-``k`` left singular vectors of
   ``H`` (``k = n_clusters``).
3. A non-negative affinity from it through the quadratic kernel,
   ``M_ij = (u_i · u_j + c)²`` (``c = bias``), factorised as ``M = Q Qᵀ`` with ``Q = Φ(U)``
   the kernel's explicit feature map (``(k + 1)(k + 2) / 2`` columns).
4. Normalised spectral clustering of ``M`` without forming it: ``d = Q (Qᵀ 1)`` are its row
   sums, and the leading left singular vectors of ``Q̃ = D^-1/2 Q`` are the eigenvectors of
   ``D^-1/2 M D^-1/2``. The embedding is vectors 2..k+1 (the first is ``D^1/2 1``).

Both spectral steps use :func:`~agc_cli.models.s2cag.top_eigenvectors` (subspace iteration on
implicit ``Z Zᵀ`` products, seeded, ``subspace_iterations`` rounds). PyAGC's implementation
normalises by ``‖Q_i‖²``, the diagonal of ``M``, where the paper and the authors' code use the
row sums ``M 1``; agc follows the paper. PyAGC also smooths the raw rows; measured on Cora
(p = 5) with the exact spectral steps, raw rows give NMI 41.4 and normalised ones 50.4.

Scaling: step 1 is :class:`~agc_cli.models.propagation.FeaturePropagation` (full-batch, or
layer-wise in batches of nodes); steps 2-4 need every node at once: ``H`` as a dense
``[nodes, features]`` matrix plus a few ``[nodes, k(k + 3)/2 + 10]`` ones.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from agc_cli.errors import UsageError
from agc_cli.models.base import cluster_count
from agc_cli.models.propagation import FeaturePropagation, TrainingFreeModel, check_num_layers
from agc_cli.models.s2cag import top_eigenvectors


def quadratic_feature_map(u: Tensor, bias: float) -> Tensor:
    """``Φ(u)`` with ``Φ(u) · Φ(v) = (u · v + bias)²`` for every pair of rows.

    Columns: ``u_i²``, ``√2 u_i u_j`` (``i < j``), ``√(2 bias) u_i`` and ``bias``.
    """
    k = u.shape[1]
    i, j = torch.triu_indices(k, k, offset=1, device=u.device)
    constant = torch.full((u.shape[0], 1), bias, dtype=u.dtype, device=u.device)
    return torch.cat(
        [u.square(), math.sqrt(2) * u[:, i] * u[:, j], math.sqrt(2 * bias) * u, constant], dim=1
    )


class SAGSC(TrainingFreeModel):
    """Scalable attributed-graph subspace clustering: a spectral step on a kernelised
    low-rank self-expression of the SGC-smoothed features.

    Args:
        num_nodes: nodes of the graph (the spectral steps need all of them).
        n_clusters: ``k``, the subspace rank and the embedding width.
        num_layers: ``p``, the propagation steps of ``Â^p X``.
        bias: ``c`` of the quadratic kernel ``(u · v + c)²`` (the authors use ``2^-1/2``).
        iterations: rounds of subspace iteration in each spectral step.
        seed: seed of the random starting subspaces.

    Paper: https://ojs.aaai.org/index.php/AAAI/article/view/25918
    """

    name = "sagsc"
    paper = "https://ojs.aaai.org/index.php/AAAI/article/view/25918"

    def __init__(
        self,
        num_nodes: int,
        n_clusters: int,
        num_layers: int,
        bias: float,
        iterations: int,
        seed: int = 0,
    ):
        super().__init__()
        check_num_layers(num_layers)
        if bias < 0:
            raise UsageError(f"bias: SAGSC's kernel bias must be >= 0 (got {bias})")
        self.num_nodes = num_nodes
        self.n_clusters = n_clusters
        self.bias = bias
        self.iterations = iterations
        self.seed = seed
        self.encoder = FeaturePropagation(
            num_layers, [0.0] * num_layers + [1.0], normalize_input=True
        )

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> SAGSC:
        return cls(
            num_nodes,
            cluster_count(cls.name, settings, num_classes),
            settings.num_layers,
            settings.bias,
            settings.subspace_iterations,
            settings.seed,
        )

    def readout(self, h: Tensor) -> Tensor:
        """Steps 2-4 on the smoothed features of every node."""
        if h.shape[0] != self.num_nodes:
            raise UsageError(
                f"{self.name}: its spectral step is defined on the whole graph; embed every "
                f"node (got {h.shape[0]:,} of {self.num_nodes:,}), without --nodes or --labeled"
            )
        # A fresh generator per call: the same graph and seed give the same embedding.
        generator = torch.Generator().manual_seed(self.seed)
        u = top_eigenvectors(h, self.n_clusters, self.iterations, generator)
        q = quadratic_feature_map(u, self.bias)
        degree = q @ q.sum(dim=0)  # M 1, without the n x n product; > 0 when bias > 0
        q = q * degree.clamp(min=torch.finfo(q.dtype).tiny).rsqrt()[:, None]
        return top_eigenvectors(q, self.n_clusters + 1, self.iterations, generator)[:, 1:]
