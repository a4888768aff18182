"""MAGI (Liu et al., KDD 2024), https://arxiv.org/abs/2406.14288."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from agc_cli.data.graph import Graph
from agc_cli.models.base import ClusteringModel, LossOutput
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder

# The paper's activation on the output layer: leaky ReLU with this slope (its ``ns``). On Cora
# it beats the encoder's activations (NMI ~59 against ~57 for none, ~51 for slope 0.01, and
# PReLU peaks at 59 then degrades as weight decay pulls its slopes to 0).
NEGATIVE_SLOPE = 0.5


class MAGI(ClusteringModel):
    """Modularity maximisation as contrastive learning: positives are the node pairs whose
    random-walk co-visitation is above its expectation.

    **Positive pairs (stage two).** ``num_walks`` walks of ``walk_length`` steps start at every
    seed node ``i``; ``s_ij`` is the fraction of ``i``'s steps that land on seed ``j``, an
    estimate of the average of ``P^t_ij`` for ``t = 1 .. walk_length``. The modularity of this
    walk (Markov stability, https://arxiv.org/abs/0812.1811) is ``B_ij = d_i s_ij / 2m -
    d_i d_j / (2m)^2``: the chance that a stationary walker goes ``i -> j`` minus its value when
    the endpoints are independent. Reversibility makes it symmetric in expectation, and the
    estimate is symmetrised as ``(d_i s_ij + d_j s_ji) / 2``, so the positive weights
    ``max(B_ij, 0)`` for ``i != j`` are symmetric and non-negative. Like the paper, the loss uses
    them as a mask (pairs with ``B_ij > 0``).

    **Objective.** The encoder's last layer is plain; embeddings are its output through a leaky
    ReLU of slope :data:`NEGATIVE_SLOPE`, row-wise min-max scaled and L2-normalised (the
    paper's ``scale`` + ``normalize``). For every seed ``i`` with positives ``M_i``, the loss is
    ``-tau * mean_{j in M_i} log softmax_{k != i}(z_i . z_k / tau)_j``, averaged over those
    seeds: a supervised contrastive loss whose classes are modularity's communities. It is
    dense over the seeds: a few ``n x n`` float tensors for ``n`` seeds (every node in
    full-batch: 0.2 GB on Cora, 5 GB at 20,000 nodes; beyond ~10^4 nodes train mini-batch).

    **Mini-batch (stage one).** :meth:`seed_batches` makes each batch a union of communities:
    every node is a root once per epoch; ``num_walks`` walks restart from each root, and the
    nodes visited more often than the root's average visited node join it (the paper's
    sub-community sampling). Groups are packed in order into batches of at most
    ``batch_size`` seeds. Since a node can join several groups, an epoch has more seed slots
    than nodes (about the mean group size times). The stage-two walks run on the whole graph,
    registered by :meth:`begin_epoch` (or :meth:`seed_batches`); without one they run on the
    batch's own edges (the whole graph in full-batch).

    Walks draw from ``self.generator`` when set, else from torch's global RNG. In full-batch
    training the pairs are drawn once, at the first step, and kept in the state dict (as the
    paper does; resampling costs more than the rest of a step on CPU). In mini-batch training
    they are drawn for each batch.

    Args:
        encoder: the GNN.
        tau: temperature.
        num_walks: walks per node.
        walk_length: steps per walk.

    Paper: https://arxiv.org/abs/2406.14288
    """

    name = "magi"
    paper = "https://arxiv.org/abs/2406.14288"

    def __init__(
        self, encoder: Encoder, tau: float = 0.5, num_walks: int = 20, walk_length: int = 4
    ):
        super().__init__()
        self.encoder = encoder
        self.tau = tau
        self.num_walks = num_walks
        self.walk_length = walk_length
        self._topology: tuple[Tensor, Tensor] | None = None
        self._full_pairs: Tensor | None = None

    @classmethod
    def from_settings(
        cls, in_channels: int, num_nodes: int, num_classes: int | None, settings: Any
    ) -> MAGI:
        return cls(
            Encoder.from_settings(in_channels, settings, plain_last=True),
            tau=settings.tau,
            num_walks=settings.num_walks,
            walk_length=settings.walk_length,
        )

    def readout(self, h: Tensor) -> Tensor:
        h = F.leaky_relu(h, NEGATIVE_SLOPE)
        low = h.min(dim=-1, keepdim=True).values
        high = h.max(dim=-1, keepdim=True).values
        # The paper's epsilon, so a constant row scales to zeros instead of NaN.
        return F.normalize((h - low) / (high - low + 1e-20), dim=-1)

    def begin_epoch(self, epoch: int, graph: Graph) -> None:
        """Register ``graph`` as the one the stage-two walks run on."""
        self._topology = (graph.colptr, graph.row)

    def loss(self, batch: GraphBatch) -> LossOutput:
        z = self.embed(batch)
        pairs = self._full_pairs if batch.is_full else None
        if pairs is None:
            pairs, _ = self.positive_pairs(batch)
            if batch.is_full:
                self._full_pairs = pairs
        pairs = pairs.to(z.device)
        n = z.shape[0]
        logits = (z @ z.T) / self.tau
        # Each row's softmax runs over every other seed: the anchor itself is not a candidate.
        # In place (a boolean mask is several times slower on CPU); the product's backward
        # does not read it.
        logits.fill_diagonal_(-torch.inf)
        log_prob = torch.log_softmax(logits, dim=1)[pairs[0], pairs[1]]
        per_anchor = torch.zeros(n, device=z.device, dtype=log_prob.dtype)
        per_anchor = per_anchor.index_add(0, pairs[0], log_prob)
        count = torch.bincount(pairs[0], minlength=n)
        anchored = count > 0
        if not anchored.any():
            zero = z.sum() * 0
            return LossOutput(zero, {"positives": zero.detach()})
        loss = -self.tau * (per_anchor[anchored] / count[anchored]).mean()
        positives = torch.tensor(pairs.shape[1] / n, device=z.device)
        return LossOutput(loss, {"positives": positives})

    def positive_pairs(self, batch: GraphBatch) -> tuple[Tensor, Tensor]:
        """Positive pairs among the batch's seeds and their modularity weights.

        Returns:
            ``([2, P] local seed indices, [P] weights > 0)``, symmetric: ``(i, j)`` is listed
            with the weight of ``(j, i)``; no pair ``(i, i)``.
        """
        if self._topology is not None:
            colptr, row = self._topology
            seeds = batch.n_id[: batch.batch_size]
        else:
            colptr, row = _csc(batch.edge_index, batch.num_nodes)
            seeds = torch.arange(batch.batch_size, device=colptr.device)
        device = self.generator.device if self.generator is not None else colptr.device
        pairs, weights = walk_modularity(
            self.tool("random_walk"), colptr.to(device), row.to(device), seeds.to(device),
            self.num_walks, self.walk_length, self.generator,
        )  # fmt: skip
        return pairs.to(batch.device), weights.to(batch.device)

    def seed_batches(
        self, graph: Graph, batch_size: int, generator: torch.Generator
    ) -> Iterator[Tensor]:
        """Batches of whole communities, each root node once per epoch (see the class doc)."""
        self._topology = (graph.colptr, graph.row)
        # Drawn now, not on first iteration, so the generator advances when this is called.
        roots = torch.randperm(graph.num_nodes, generator=generator)
        return self._packed(graph, roots, batch_size, generator)

    def _packed(
        self, graph: Graph, roots: Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[Tensor]:
        """Pack the roots' groups, in root order, into batches of at most ``batch_size`` nodes.

        A group joins the batch in which its first slot (its root) falls, counting slots over the
        concatenated groups; the last group of a batch may overflow, and the overflow (never a
        root, since roots come first) is cut after removing repeated nodes.
        """
        colptr, row = graph.colptr, graph.row
        nodes = torch.empty(0, dtype=torch.long)
        sizes = torch.empty(0, dtype=torch.long)
        chunks = roots.split(batch_size)
        for index, chunk in enumerate(chunks):
            more_nodes, more_sizes = communities(
                self.tool("random_walk"),
                colptr,
                row,
                chunk,
                self.num_walks,
                self.walk_length,
                generator,
            )
            nodes, sizes = torch.cat([nodes, more_nodes]), torch.cat([sizes, more_sizes])
            ends = torch.cumsum(sizes, 0)
            which = (ends - sizes) // batch_size
            # The last batch may still grow with the next chunk's groups, unless there is none.
            last = int(which[-1]) + (1 if index == len(chunks) - 1 else 0)
            groups_per_batch = torch.bincount(which, minlength=last + 1)
            slots = torch.cat([torch.zeros(1, dtype=torch.long), ends])
            done = 0
            for count in groups_per_batch[:last].tolist():
                # A window can hold no group start when the group before it is wider.
                if count:
                    members = nodes[slots[done] : slots[done + count]]
                    done += count
                    yield _first_occurrences(members)[:batch_size]
            nodes, sizes = nodes[slots[done] :], sizes[done:]

    def get_extra_state(self) -> dict[str, Tensor]:
        state = super().get_extra_state()
        if self._full_pairs is not None:
            state["full_pairs"] = self._full_pairs
        return state

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        super().set_extra_state(state)
        self._full_pairs = state.get("full_pairs")


def walk_modularity(
    random_walk: Callable[..., Tensor],
    colptr: Tensor,
    row: Tensor,
    seeds: Tensor,
    num_walks: int,
    walk_length: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Seed pairs with positive random-walk modularity ``B_ij`` (see :class:`MAGI`).

    Args:
        colptr, row: CSC topology the walks run on; ``2m`` is ``row.numel()``.
        seeds: ``[n]`` distinct node ids in that topology.

    Returns:
        ``([2, P] positions in seeds, [P] weights)``, symmetric, without self-pairs.
    """
    n = seeds.numel()
    start = seeds.repeat(num_walks)
    visited = random_walk(colptr, row, start, walk_length, generator)[:, 1:]
    anchor = torch.arange(n, device=seeds.device).repeat(num_walks)
    anchor = anchor[:, None].expand_as(visited).reshape(-1)
    visited = visited.reshape(-1).contiguous()
    # Keep the steps that land on a seed, as the seed's position (searchsorted membership).
    order = torch.argsort(seeds)
    ordered = seeds[order]
    slot = torch.searchsorted(ordered, visited).clamp(max=max(n - 1, 0))
    hit = ordered[slot] == visited
    i, j = anchor[hit], order[slot[hit]]
    off_diagonal = i != j
    i, j = i[off_diagonal], j[off_diagonal]
    degree = (colptr[seeds + 1] - colptr[seeds]).double()
    two_m = float(row.numel())
    # d_i * s_ij / 2, added to both (i, j) and (j, i): the symmetrised d_i s_ij.
    share = degree[i] / (2 * num_walks * walk_length)
    key, inverse = torch.unique(torch.cat([i * n + j, j * n + i]), return_inverse=True)
    joint = torch.zeros(key.numel(), dtype=torch.float64, device=seeds.device)
    joint = joint.index_add(0, inverse, torch.cat([share, share]))
    i, j = key // n, key % n
    weight = joint / two_m - degree[i] * degree[j] / two_m**2
    positive = weight > 0
    return torch.stack([i[positive], j[positive]]), weight[positive].float()


def communities(
    random_walk: Callable[..., Tensor],
    colptr: Tensor,
    row: Tensor,
    roots: Tensor,
    num_walks: int,
    walk_length: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Stage one: each root and the nodes its walks visit more often than their average.

    Returns:
        ``(nodes, sizes)``: the groups concatenated in root order, each root first, and the
        size of every group.
    """
    r = roots.numel()
    num_nodes = colptr.numel() - 1
    steps = num_walks * walk_length
    walks = random_walk(colptr, row, roots.repeat_interleave(num_walks), walk_length, generator)
    owner = torch.arange(r, device=roots.device).repeat_interleave(steps)
    key, counts = torch.unique(owner * num_nodes + walks[:, 1:].reshape(-1), return_counts=True)
    owner, node = key // num_nodes, key % num_nodes
    distinct = torch.bincount(owner, minlength=r)
    member = (counts * distinct[owner] > steps) & (node != roots[owner])
    owner, node = owner[member], node[member]
    rank = torch.cat([2 * torch.arange(r, device=roots.device), 2 * owner + 1])
    order = torch.argsort(rank, stable=True)
    nodes = torch.cat([roots, node])[order]
    return nodes, 1 + torch.bincount(owner, minlength=r)


def _first_occurrences(nodes: Tensor) -> Tensor:
    """``nodes`` without repeats, each kept at its first position."""
    unique, inverse = torch.unique(nodes, return_inverse=True)
    position = torch.arange(nodes.numel(), device=nodes.device)
    first = torch.full((unique.numel(),), nodes.numel(), device=nodes.device)
    first = first.scatter_reduce(0, inverse, position, "amin")
    return nodes[first.sort().values]


def _csc(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """CSC ``(colptr, row)`` of a local ``(source, target)`` edge index."""
    order = torch.argsort(edge_index[1], stable=True)
    colptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
    torch.cumsum(torch.bincount(edge_index[1], minlength=num_nodes), 0, out=colptr[1:])
    return colptr, edge_index[0, order]
