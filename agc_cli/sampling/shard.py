"""Sharding an epoch's seed batches across data-parallel processes.

Every rank draws the same epoch permutation (a pure function of ``(seed, epoch)``), cuts it into
batches of ``batch_size`` and keeps its share: consecutive groups of ``world_size`` batches form
one *global* batch, and rank ``r`` takes the ``r``-th batch of each group. Seeds left over after
the last full group are split into ``world_size`` near-equal parts, one per rank, so every rank
runs the same number of batches (DistributedDataParallel needs that: each step is one
all-reduce) and the shards of an epoch are disjoint and cover every seed once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from agc_cli.errors import UsageError


def shard_batches(batches: Sequence[Tensor], rank: int, world_size: int) -> list[Tensor]:
    """Rank ``rank``'s batches out of ``batches`` (the epoch's batches in global order).

    A leftover smaller than ``world_size`` seeds is folded into the last full group, whose seeds
    are then split evenly, so no rank gets an empty batch.
    """
    if not 0 <= rank < world_size:
        raise UsageError(f"rank {rank} is outside a world of {world_size} processes")
    if world_size == 1:
        return list(batches)
    groups = len(batches) // world_size
    mine = [batches[g * world_size + rank] for g in range(groups)]
    tail = list(batches[groups * world_size :])
    if not tail:
        return mine
    rest = torch.cat(tail)
    if rest.numel() >= world_size:
        return [*mine, torch.tensor_split(rest, world_size)[rank]]
    if groups == 0:
        raise UsageError(
            f"{rest.numel()} seed node(s) in the epoch cannot be shared by {world_size} processes"
        )
    last = torch.cat([*batches[(groups - 1) * world_size : groups * world_size], rest])
    mine[-1] = torch.tensor_split(last, world_size)[rank]
    return mine


def drop_consumed(batches: Sequence[Tensor], seeds_done: int) -> list[Tensor]:
    """``batches`` without the leading ones whose seeds (``seeds_done`` in all) were trained on.

    A batch only partly consumed (a checkpoint written under another number of processes) is
    kept whole: its seeds are trained on again rather than skipped.
    """
    done, start = 0, 0
    while start < len(batches) and done + int(batches[start].numel()) <= seeds_done:
        done += int(batches[start].numel())
        start += 1
    return list(batches[start:])
