"""S2CAG and M-S2CAG: spectral subspace clustering for attributed graphs (KDD 2025).

Lin, Yang, Zheng & Ke, "Spectral Subspace Clustering for Attributed Graphs",
https://arxiv.org/abs/2411.11074. Both methods are training-free:

1. Normalised smoothed representations (NSR) of the nodes,
   ``Z = sum_{t=0..T} w_t P^t X̂`` with ``w_t ∝ alpha^t`` (summing to 1), ``X̂`` the
   L2-normalised feature rows, ``P = D̃^-1 (A + I)`` the random walk with self-loops and
   ``T = num_layers``. ``alpha`` may exceed 1, which weights the longer walks more.
2. A spectral step on the self-expressive affinity ``S = Z Zᵀ``, never formed
   (``n x n``): only products ``Z (Zᵀ Q)`` with thin ``Q`` are computed.

   - S2CAG: the low-rank, orthogonal self-expressive solution is spanned by the top left
     singular vectors of ``Z``; the embedding is vectors 2..k+1 (the first follows each node's
     total affinity, not its cluster).
   - M-S2CAG: maximises the modularity of the affinity graph instead: the top-k eigenvectors
     of ``B = Z Zᵀ - gamma d dᵀ / (1ᵀ d)`` with ``d = Z Zᵀ 1``.

   Both by orthogonal (subspace) iteration from a seeded random start, ``subspace_iterations``
   rounds, then a Rayleigh-Ritz step to pick and order the top vectors.

The embedding is ``k`` wide (``n_clusters``); cluster it with k-means on L2-normalised rows.
The original work rounds with its own SNEM procedure; agc uses its k-means step for every method.

Scaling: step 1 is :class:`~agc_cli.models.propagation.FeaturePropagation` (full-batch, or
layer-wise in batches of nodes); step 2 needs every node at once: ``Z`` as a dense
``[nodes, features]`` matrix plus a few ``[nodes, k + 10]`` ones, and
``O(iterations · nodes · features · k)`` time. Embedding a subset of nodes is refused: the
spectral step is defined on the whole graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agc_cli.errors import UsageError
from agc_cli.models.base import cluster_count
from agc_cli.models.propagation import FeaturePropagation, TrainingFreeModel, check_num_layers

# Extra vectors carried through the subspace iteration: they speed up convergence of the
# wanted ones (the standard randomized-SVD oversampling).
OVERSAMPLE = 10


def nsr_weights(num_layers: int, alpha: float) -> list[float]:
    """``w_t = alpha^t / sum_s alpha^s`` for ``t = 0..num_layers``."""
    check_num_layers(num_layers)
    powers = [alpha**t for t in range(num_layers + 1)]
    total = sum(powers)
    return [p / total for p in powers]


def top_eigenvectors(
    z: Tensor,
    dim: int,
    iterations: int,
    generator: torch.Generator,
    null: tuple[Tensor, float] | None = None,
) -> Tensor:
    """The ``dim`` leading eigenvectors of ``Z Zᵀ - c u uᵀ``, largest eigenvalue first.

    Args:
        z: ``[n, f]``.
        null: ``(u, c)`` for a rank-one term to subtract (``None``: the plain ``Z Zᵀ``).

    Returns:
        ``[n, dim]`` orthonormal columns, each signed so its largest-magnitude entry is positive.
    """
    n = z.shape[0]
    width = min(dim + OVERSAMPLE, n)

    def apply(q: Tensor) -> Tensor:
        out = z @ (z.T @ q)
        if null is not None:
            u, c = null
            out = out - c * u[:, None] * (u @ q)[None, :]
        return out

    start = torch.randn(n, width, generator=generator).to(z)
    q = torch.linalg.qr(start).Q
    for _ in range(iterations):
        q = torch.linalg.qr(apply(q)).Q
    values, vectors = torch.linalg.eigh(q.T @ apply(q))
    top = q @ vectors[:, values.argsort(descending=True)[:dim]]
    # Eigenvectors are defined up to sign; fix it (largest-magnitude entry positive) so that
    # equal inputs computed along different paths give equal embeddings.
    pivot = top.abs().argmax(dim=0)
    return top * torch.sign(top[pivot, torch.arange(top.shape[1])])


class S2CAG(TrainingFreeModel):
    """Spectral subspace clustering: top singular vectors of the smoothed features.

    Args:
        num_nodes: nodes of the graph (the spectral step needs all of them).
        n_clusters: ``k``, the embedding width.
        num_layers: ``T``, the longest walk in the smoothing.
        alpha: decay of the walk weights (``> 1`` favours longer walks).
        iterations: rounds of subspace iteration.
        seed: seed of the random starting subspace.

    Paper: https://arxiv.org/abs/2411.11074
    """

    name = "s2cag"
    paper = "https://arxiv.org/abs/2411.11074"

    def __init__(
        self,
        num_nodes: int,
        n_clusters: int,
        num_layers: int,
        alpha: float,
        iterations: int,
        seed: int = 0,
    ):
        super().__init__()
        if alpha <= 0:
            raise UsageError(f"alpha: {self.name}'s walk weight decay must be > 0 (got {alpha})")
        self.num_nodes = num_nodes
        self.n_clusters = n_clusters
        self.iterations = iterations
        self.seed = seed
        self.encoder = FeaturePropagation(
            num_layers, nsr_weights(num_layers, alpha), operator="rw", normalize_input=True
        )

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> S2CAG:
        return cls(num_nodes, **cls._options(num_classes, settings))

    @classmethod
    def _options(cls, num_classes: int | None, settings: Any) -> dict[str, Any]:
        n_clusters = cluster_count(cls.name, settings, num_classes)
        return {
            "n_clusters": n_clusters,
            "num_layers": settings.num_layers,
            "alpha": settings.alpha,
            "iterations": settings.subspace_iterations,
            "seed": settings.seed,
        }

    def readout(self, h: Tensor) -> Tensor:
        """The spectral step on the smoothed representations of every node."""
        self._check_every_node(h)
        vectors = top_eigenvectors(h, self.n_clusters + 1, self.iterations, self._generator())
        return vectors[:, 1:]

    def _check_every_node(self, h: Tensor) -> None:
        if h.shape[0] != self.num_nodes:
            raise UsageError(
                f"{self.name}: its spectral step is defined on the whole graph; embed every "
                f"node (got {h.shape[0]:,} of {self.num_nodes:,}), without --nodes or --labeled"
            )

    def _generator(self) -> torch.Generator:
        # A fresh generator per call: the same graph and seed give the same embedding.
        return torch.Generator().manual_seed(self.seed)


class MS2CAG(S2CAG):
    """Modularity-based S2CAG: top eigenvectors of the affinity graph's modularity matrix.

    Args:
        gamma: weight of the null model ``d dᵀ / (1ᵀ d)`` (1 is standard modularity).
        others: as :class:`S2CAG`.

    Paper: https://arxiv.org/abs/2411.11074
    """

    name = "ms2cag"

    def __init__(
        self,
        num_nodes: int,
        n_clusters: int,
        num_layers: int,
        alpha: float,
        iterations: int,
        seed: int = 0,
        gamma: float = 1.0,
    ):
        super().__init__(num_nodes, n_clusters, num_layers, alpha, iterations, seed)
        self.gamma = gamma

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> MS2CAG:
        return cls(num_nodes, **cls._options(num_classes, settings), gamma=settings.gamma)

    def readout(self, h: Tensor) -> Tensor:
        """Leading eigenvectors of ``Ẑ Ẑᵀ - gamma d dᵀ / (1ᵀ d)``, ``Ẑ`` the rows of ``Z``
        scaled to unit length (the paper's normalised smoothed representation; zero rows stay
        zero)."""
        self._check_every_node(h)
        h = torch.nn.functional.normalize(h, dim=1)
        # d = Z Zᵀ 1 without the n x n product; 1ᵀ d = |Zᵀ 1|² is never negative.
        column_sums = h.sum(dim=0)
        degree = h @ column_sums
        total = float(column_sums @ column_sums)
        # Zero column sums (centred features) make the affinity degrees zero: no null model.
        null = (degree, self.gamma / total) if total > 0 else None
        return top_eigenvectors(h, self.n_clusters, self.iterations, self._generator(), null)
