"""DAEGC (Wang et al., IJCAI 2019), https://arxiv.org/abs/1906.06532."""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agc_cli.data.graph import Graph
from agc_cli.models import rng
from agc_cli.models.base import ClusteringModel, LossOutput, cluster_count
from agc_cli.models.batch import Block, GraphBatch
from agc_cli.models.encoder import Encoder
from agc_cli.models.gae import GAE
from agc_cli.models.sparse import SparseMatrix

# Training phases, kept in the state dict: reconstruction only; joint, cluster centres not yet
# initialised; joint.
PRETRAIN, JOINT_INIT, JOINT = 0, 1, 2
# The reconstruction term sums over all n^2 seed pairs exactly up to this many seeds (n^2
# floats take 64 MiB beyond) and while the pairs are at most EXACT_MAX_RATIO times the pairs
# its estimate samples (the E + n positive pairs); otherwise it is estimated. The
# exact sum costs n^2 D multiply-adds forward and twice that backward: on Cora (7.3M pairs, 13K
# sampled, ratio 550) it took 60% of each training step (161 of 263 ms, one thread). Sampled,
# the NMI stays above PyAGC's 46.9 (seeds 0-2: 52.2, 49.1, 50.9; exact, seed 0: 52.1).
DENSE_MAX_NODES = 4096
EXACT_MAX_RATIO = 32


class DAEGC(ClusteringModel):
    """Deep attentional embedded graph clustering: a graph attention autoencoder trained jointly
    with a self-training clustering objective.

    The embedding is ``z = normalize(GAT(X, A))``. **Pretraining** (the first
    ``pretrain_epochs`` epochs) minimises the reconstruction loss: the mean binary
    cross-entropy of ``sigmoid(z_i . z_j)`` against ``A + I`` over all ordered seed pairs.
    **Joint training** adds ``gamma * KL(P || Q)``: ``Q`` is the Student's t soft assignment
    of the embeddings to learnable cluster centres, ``P`` the sharpened target
    ``q_ij^2 / f_j`` (row-normalised, ``f_j = sum_i q_ij`` over the seeds).

    **Phase switch.** :meth:`begin_epoch` switches to joint training at epoch
    ``pretrain_epochs``; the next loss initialises the centres by k-means on that batch's
    embeddings (every node in full-batch, as in the paper; the batch's seeds in mini-batch,
    which needs no pass over the whole graph).

    **Target refresh.** ``P`` is computed by the model as it was at the last refresh, which
    happens at every ``update_interval``-th joint training step (a ``loss`` call in training
    mode with gradients on). At a refresh the model keeps a copy of its weights (in the state
    dict); ``P`` for a batch is then always computed from ``Q`` of exactly that batch's seeds
    under those weights, in eval mode, with ``f`` summed over the same seeds. In full-batch this
    is the paper's schedule, and ``P`` is computed once per refresh and reused; in mini-batch
    it costs one extra forward pass without gradients per step, and never reads stale values
    of other nodes.

    **Reconstruction at scale.** On small graphs the ``n^2`` pairs are summed exactly. Once
    they outnumber the positive pairs :data:`EXACT_MAX_RATIO` times over (Cora already) or
    the seeds exceed :data:`DENSE_MAX_NODES`, the sum of ``softplus(z_i . z_j)`` over all
    pairs is estimated from as many uniform pairs as there are positive pairs (unbiased; PyAGC
    samples as many negative pairs), the positive pairs' terms staying exact, and a step
    costs about what the encoder costs. In mini-batch the
    positives are the sampled edges between seeds, and :meth:`seed_batches` makes the seeds
    the endpoints of random edges (GAE's), so batches have edges to reconstruct.

    The attention is GAT's over first-order neighbours (as PyAGC's); the paper's attention
    also weights each neighbour by a two-step transition proximity.

    Args:
        encoder: the GAT (any GNN works).
        n_clusters: number of clusters.
        pretrain_epochs: epochs of reconstruction only.
        update_interval: joint training steps between target refreshes.
        gamma: weight of the clustering loss.

    Paper: https://arxiv.org/abs/1906.06532
    """

    name = "daegc"
    paper = "https://arxiv.org/abs/1906.06532"

    # The centres get no gradient while pretraining (data-parallel training must know).
    ddp_find_unused_parameters = True

    def __init__(
        self,
        encoder: Encoder,
        n_clusters: int,
        pretrain_epochs: int = 0,
        update_interval: int = 1,
        gamma: float = 10.0,
    ):
        super().__init__()
        self.encoder = encoder
        self.n_clusters = n_clusters
        self.pretrain_epochs = pretrain_epochs
        self.update_interval = update_interval
        self.gamma = gamma
        self.centres = nn.Parameter(torch.zeros(n_clusters, encoder.out_channels))
        self.phase = PRETRAIN
        self.step = 0  # joint training steps taken
        self._target_weights: dict[str, Tensor] | None = None
        # Full-batch P of the current refresh: recomputable from _target_weights, not saved.
        self._full_target: Tensor | None = None

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> DAEGC:
        n_clusters = cluster_count("DAEGC", settings, num_classes)
        return cls(
            Encoder.from_settings(in_channels, settings),
            n_clusters,
            pretrain_epochs=settings.pretrain_epochs,
            update_interval=settings.update_interval,
            gamma=settings.gamma,
        )

    # GAE's seed batches: random seeds of a large sparse graph have almost no edge between
    # them, which would leave nothing to reconstruct.
    seed_batches = GAE.seed_batches

    def readout(self, h: Tensor) -> Tensor:
        return F.normalize(h, dim=-1)

    def forward(self, batch: GraphBatch) -> Tensor:
        """Soft cluster assignments ``Q`` of the batch's seeds."""
        return soft_assignment(self.embed(batch), self.centres)

    def begin_epoch(self, epoch: int, graph: Graph) -> None:
        """Switch to joint training once ``pretrain_epochs`` epochs are done."""
        if self.phase == PRETRAIN and epoch >= self.pretrain_epochs:
            self.phase = JOINT_INIT

    def loss(self, batch: GraphBatch) -> LossOutput:
        z = self.embed(batch)
        block = batch.seed_block()
        reconstruction = reconstruction_loss(
            z, block.edge_index, self.generator, positive_pairs(block)
        )
        if self.phase == PRETRAIN:
            return LossOutput(reconstruction, {"reconstruction": reconstruction.detach()})
        if self.phase == JOINT_INIT:
            self._init_centres(z.detach())
        training = self.training and torch.is_grad_enabled()
        if training and self.step % self.update_interval == 0:
            self._refresh_target()
        p = self.target_distribution(batch)
        q = soft_assignment(z, self.centres)
        clustering = F.kl_div(q.log(), p, reduction="batchmean")
        if training:
            self.step += 1
        return LossOutput(
            reconstruction + self.gamma * clustering,
            {"reconstruction": reconstruction.detach(), "clustering": clustering.detach()},
        )

    def target_distribution(self, batch: GraphBatch) -> Tensor:
        """``P`` of the batch's seeds under the weights of the last refresh.

        Before the first refresh (an evaluation ahead of any joint training step) the current
        weights are the refresh.
        """
        if self._target_weights is None:
            self._refresh_target()
        if batch.is_full and self._full_target is not None:
            return self._full_target.to(batch.device)
        weights = {k: v.to(batch.device) for k, v in self._target_weights.items()}
        mode = self.training
        self.eval()
        with torch.no_grad():
            q = torch.func.functional_call(self, weights, (batch,))
        self.train(mode)
        p = sharpen(q)
        if batch.is_full:
            self._full_target = p
        return p

    def _init_centres(self, z: Tensor) -> None:
        self.fit_centres(self.centres, z)
        self.phase = JOINT

    def _refresh_target(self) -> None:
        named = chain(self.named_parameters(), self.named_buffers())
        self._target_weights = {name: t.detach().clone() for name, t in named}
        self._full_target = None

    def get_extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_extra_state()
        state["phase"] = torch.tensor(self.phase)
        state["step"] = torch.tensor(self.step)
        if self._target_weights is not None:
            state["target_weights"] = self._target_weights
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.phase = int(state["phase"])
        self.step = int(state["step"])
        self._target_weights = state.get("target_weights")
        self._full_target = None


def soft_assignment(z: Tensor, centres: Tensor) -> Tensor:
    """Student's t kernel (one degree of freedom) between rows and centres, row-normalised."""
    distance = z.pow(2).sum(-1, keepdim=True) + centres.pow(2).sum(-1) - 2 * z @ centres.T
    q = 1.0 / (1.0 + distance.clamp(min=0))
    return q / q.sum(dim=1, keepdim=True)


def sharpen(q: Tensor) -> Tensor:
    """DEC's target distribution: ``q^2`` over cluster frequency, row-normalised."""
    weight = q.pow(2) / q.sum(dim=0)
    return weight / weight.sum(dim=1, keepdim=True)


def reconstruction_loss(
    z: Tensor,
    edge_index: Tensor,
    generator: torch.Generator | None = None,
    adjacency: SparseMatrix | None = None,
) -> Tensor:
    """Mean BCE of ``sigmoid(z_i . z_j)`` against ``A + I`` over all ``n^2`` ordered pairs.

    With logits ``s`` and 0/1 targets ``t``, ``BCE = softplus(s) - t s``, so the loss is
    ``(sum over all pairs of softplus(s) - sum over positive pairs of s) / n^2``. The first sum
    is exact where :func:`exact_reconstruction` says so and estimated from uniform pairs
    otherwise.

    Args:
        z: ``[n, D]`` embeddings.
        edge_index: ``[2, E]`` distinct edges among the rows (self-loops are ignored: the
            diagonal is always positive).
        adjacency: those edges without self-loops as a matrix (:func:`positive_pairs`);
            built from ``edge_index`` when not given.
    """
    n = z.shape[0]
    if adjacency is None:
        adjacency = _adjacency(edge_index, n)
    # The positive pairs' logits summed as sum(Z * A Z): a sparse product, forward and
    # backward, where gathering both ends of every edge would copy two [E, D] tensors.
    positive = (z * adjacency.matmul(z)).sum() + z.pow(2).sum()
    samples = adjacency.nnz + n
    if exact_reconstruction(n, samples):
        every_pair = F.softplus(z @ z.T).sum()
    else:
        i, j = rng.randint(n, (2, samples), z.device, generator)
        every_pair = F.softplus(pair_logits(z, i, j)).sum() * (n * n / samples)
    return (every_pair - positive) / (n * n)


def exact_reconstruction(n: int, positive_pairs: int) -> bool:
    """Whether the reconstruction loss of ``n`` rows with ``positive_pairs`` positive pairs
    (self-pairs included) sums over every pair exactly (see :data:`EXACT_MAX_RATIO`)."""
    return n <= DENSE_MAX_NODES and n * n <= EXACT_MAX_RATIO * positive_pairs


def positive_pairs(block: Block) -> SparseMatrix:
    """The block's edges without self-loops as a 0/1 matrix, built once per block."""
    key = "daegc:positive_pairs"
    if key not in block._cache:
        block._cache[key] = _adjacency(block.edge_index, block.num_src)
    return block._cache[key]


def _adjacency(edge_index: Tensor, n: int) -> SparseMatrix:
    src, dst = edge_index[:, edge_index[0] != edge_index[1]]
    return SparseMatrix.from_edges(dst, src, torch.ones(src.numel(), device=src.device), (n, n))


def pair_logits(z: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """``z[i[e]] . z[j[e]]`` of every pair, in the order of the pairs sorted by ``(i, j)``
    (a sum over them does not care).

    The pairs become one sparse pattern: the logits are one sampled product
    (``sampled_addmm``) and the gradient two weighted sum-bag products, where gathering both
    ends of every pair copies two ``[pairs, D]`` tensors and scatters two back.
    """
    return _PairLogits.apply(z, i, j)


class _PairLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, i: Tensor, j: Tensor) -> Tensor:
        n = z.shape[0]
        order = torch.argsort(i * n + j)
        i, j = i.index_select(0, order), j.index_select(0, order)
        rows = _pointers(i, n)
        # sampled_addmm wants float32 or float64 (autocast may hand over half precision).
        zf = z if z.dtype in (torch.float32, torch.float64) else z.float()
        pattern = torch.sparse_csr_tensor(rows, j, zf.new_zeros(j.numel()), (n, n),
                                          check_invariants=False)  # fmt: skip
        logits = torch.sparse.sampled_addmm(pattern, zf, zf.T, beta=0.0).values()
        ctx.save_for_backward(zf, i, j, rows)
        ctx.dtype = z.dtype
        return logits.to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None]:
        z, i, j, rows = ctx.saved_tensors
        grad = grad.to(z.dtype)
        # d/dz_k: the z_j of the pairs (k, j) plus the z_i of the pairs (i, k), each weighted.
        out = F.embedding_bag(j, z, rows[:-1], mode="sum", per_sample_weights=grad)
        by_j = torch.argsort(j, stable=True)
        weights = grad.index_select(0, by_j)
        offsets = _pointers(j, z.shape[0])[:-1]
        out += F.embedding_bag(
            i.index_select(0, by_j), z, offsets, mode="sum", per_sample_weights=weights
        )
        return out.to(ctx.dtype), None, None


def _pointers(sorted_index: Tensor, n: int) -> Tensor:
    """CSR row pointers ``[n + 1]`` of entries sorted by row, ``sorted_index`` their rows."""
    pointers = torch.zeros(n + 1, dtype=torch.long, device=sorted_index.device)
    torch.cumsum(torch.bincount(sorted_index, minlength=n), 0, out=pointers[1:])
    return pointers
