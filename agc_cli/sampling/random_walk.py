"""Random walks over CSC topology, vectorised over walkers (PyG's needs ``torch-cluster``).

Used by MAGI (https://arxiv.org/abs/2406.14288) to build its positive pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agc_cli.errors import UsageError


def random_walk(
    colptr: Tensor,
    row: Tensor,
    start: Tensor,
    walk_length: int,
    generator: torch.Generator | None = None,
    p: float = 1.0,
    q: float = 1.0,
) -> Tensor:
    """Walk ``walk_length`` steps from every node in ``start``, all walkers at once.

    A step moves from node ``v`` to one of ``row[colptr[v]:colptr[v + 1]]`` (its neighbours in
    agc's undirected graphs). With ``p = q = 1`` the choice is uniform. Otherwise it is
    node2vec's second-order walk (https://arxiv.org/abs/1607.00653): returning to the previous
    node is weighted ``1/p``, a neighbour of the previous node ``1``, any other node ``1/q``,
    sampled by rejection; this needs each column's ``row`` entries sorted ascending, as
    :func:`agc_cli.data.graph.to_csc` writes them. A walker on a node without neighbours
    stays there.

    Args:
        colptr: int64 ``[N + 1]``.
        row: ``[E]`` source node of every edge, on ``colptr``'s device.
        start: ``[W]`` start node of every walker.
        walk_length: number of steps, ``>= 0``.
        generator: random source on ``colptr``'s device; torch's global RNG if ``None``.
        p: return parameter, ``> 0``.
        q: in-out parameter, ``> 0``.

    Returns:
        int64 ``[W, walk_length + 1]`` visited nodes, starting with ``start``.
    """
    if walk_length < 0:
        raise UsageError(f"walk_length: expected >= 0, got {walk_length}")
    if p <= 0 or q <= 0:
        raise UsageError(f"random walk p and q must be > 0, got p={p}, q={q}")
    device = colptr.device
    current = start.to(device=device, dtype=torch.long)
    walks = [current]
    previous: Tensor | None = None
    for _ in range(walk_length):
        following = _step(colptr, row, current, previous, generator, p, q)
        previous, current = current, following
        walks.append(current)
    return torch.stack(walks, dim=1)


def _step(
    colptr: Tensor,
    row: Tensor,
    current: Tensor,
    previous: Tensor | None,
    generator: torch.Generator | None,
    p: float,
    q: float,
) -> Tensor:
    """Next node of every walker; walkers without neighbours stay put."""
    following = current.clone()
    # index_select: on CPU it is several times faster than advanced indexing for 1-D gathers.
    start = colptr.index_select(0, current)
    degree = colptr.index_select(0, current + 1) - start
    pending = (degree > 0).nonzero().view(-1)
    biased = previous is not None and (p != 1.0 or q != 1.0)
    # Each round proposes a uniform neighbour to every pending walker; uniform walks accept all
    # proposals, node2vec walks retry the rejected ones.
    while pending.numel():
        count = degree[pending]
        draw = torch.rand(
            count.numel(), dtype=torch.float64, generator=generator, device=count.device
        )
        offset = torch.minimum((draw * count).long(), count - 1)
        proposal = row.index_select(0, start[pending] + offset).long()
        if biased:
            accept = _node2vec_accept(colptr, row, previous[pending], proposal, p, q, generator)
        else:
            accept = torch.ones_like(proposal, dtype=torch.bool)
        following[pending[accept]] = proposal[accept]
        pending = pending[~accept]
    return following


def _node2vec_accept(
    colptr: Tensor,
    row: Tensor,
    previous: Tensor,
    proposal: Tensor,
    p: float,
    q: float,
    generator: torch.Generator | None,
) -> Tensor:
    """Keep each proposal with probability ``weight / max weight`` (rejection sampling)."""
    weight = torch.full(proposal.shape, 1.0 / q, dtype=torch.float64, device=proposal.device)
    weight[_is_neighbor(colptr, row, previous, proposal)] = 1.0
    weight[proposal == previous] = 1.0 / p
    draw = torch.rand(
        proposal.numel(), dtype=torch.float64, generator=generator, device=proposal.device
    )
    return draw * max(1.0 / p, 1.0, 1.0 / q) < weight


def _is_neighbor(colptr: Tensor, row: Tensor, node: Tensor, other: Tensor) -> Tensor:
    """Whether ``other[i]`` is in ``node[i]``'s sorted neighbour list (vectorised bisection)."""
    low = colptr.index_select(0, node)
    end = colptr.index_select(0, node + 1)
    high = end.clone()
    last = max(row.numel() - 1, 0)
    steps = int((high - low).max()).bit_length() if node.numel() else 0
    for _ in range(steps):
        active = low < high
        middle = (low + high) // 2
        right = active & (row.index_select(0, middle.clamp(max=last)) < other)
        low = torch.where(right, middle + 1, low)
        high = torch.where(active & ~right, middle, high)
    return (low < end) & (row.index_select(0, low.clamp(max=last)) == other)
