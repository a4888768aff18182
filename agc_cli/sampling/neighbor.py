"""Uniform neighbour sampling without replacement, as a PyG ``BaseSampler``.

PyG's ``NeighborSampler`` needs ``pyg-lib`` or ``torch-sparse``; this one needs only torch, runs
on whatever device the topology lives on, and is deterministic given a seed or generator.

Without-replacement sampling uses Floyd's algorithm vectorised over the frontier: for fan-out
``k`` it runs ``k`` steps over an ``[n, k]`` tensor, drawing one random position per node per
step, so the cost is ``O(n k^2)`` whatever the node degrees are (no neighbour list is ever
materialised). Sampled nodes are relabelled through a persistent lookup table (global id ->
local id, ``-1`` when absent) that is reset after every batch, instead of sorting with
``torch.unique``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from numbers import Integral

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import get_worker_info
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    NodeSamplerInput,
    SamplerOutput,
)

from agc_cli.data.store import check_neighbour_ids
from agc_cli.errors import UsageError

_MASK64 = (1 << 64) - 1

GeneratorFn = Callable[[NodeSamplerInput], torch.Generator]


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed (SplitMix64), so nearby inputs give unrelated streams.

    Used to derive a batch's generator from ``(seed, epoch, batch key)`` and an epoch's seed
    order from ``(seed, epoch)``: both are then pure functions of their inputs.
    """
    state = 0
    for part in parts:
        state = ((state ^ (part & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state >> 1


class CSCTopology:
    """CSC adjacency ``(colptr, row)``, held in memory or memory-mapped from ``.npy`` files.

    File-backed topologies pickle as their file paths and are re-opened lazily in each process
    (a DataLoader worker started with ``spawn`` maps the files instead of receiving copies).

    Args:
        colptr: int64 ``[N + 1]``: a tensor, a NumPy array or a ``np.memmap`` (e.g. from
            ``np.load(path, mmap_mode="r")``); a memmap is remembered by its file.
        row: int64 or int32 ``[E]``, same kinds as ``colptr``.
    """

    def __init__(self, colptr: Tensor | np.ndarray, row: Tensor | np.ndarray):
        self._sources = (_array_source(colptr), _array_source(row))
        self._tensors: tuple[Tensor, Tensor] | None = (_as_tensor(colptr), _as_tensor(row))
        if self._tensors[0].device != self._tensors[1].device:
            raise UsageError("colptr and row are on different devices; move both to one device")

    @classmethod
    def from_npy(cls, colptr_path: str | os.PathLike, row_path: str | os.PathLike) -> CSCTopology:
        """Memory-map ``colptr`` and ``row`` from ``.npy`` files written with ``np.save``."""
        return cls(np.load(colptr_path, mmap_mode="r"), np.load(row_path, mmap_mode="r"))

    @property
    def colptr(self) -> Tensor:
        return self._open()[0]

    @property
    def row(self) -> Tensor:
        return self._open()[1]

    @property
    def num_nodes(self) -> int:
        return int(self.colptr.numel() - 1)

    @property
    def num_edges(self) -> int:
        return int(self.row.numel())

    @property
    def device(self) -> torch.device:
        return self.colptr.device

    @property
    def file_backed(self) -> bool:
        return all(source is not None for source in self._sources)

    def _open(self) -> tuple[Tensor, Tensor]:
        if self._tensors is None:
            self._tensors = tuple(_open_memmap(source) for source in self._sources)
        return self._tensors

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.file_backed:
            state["_tensors"] = None
        return state


def _array_source(array: Tensor | np.ndarray) -> tuple | None:
    """``(file, dtype, shape, offset)`` of a memmap spanning its whole file, else ``None``."""
    if not isinstance(array, np.memmap) or array.filename is None:
        return None
    # A slice of a memmap keeps its parent's offset, so only whole-file arrays can be reopened.
    whole = os.path.getsize(array.filename) - array.offset == array.nbytes
    if not (whole and array.flags.c_contiguous):
        return None
    return (array.filename, array.dtype, array.shape, array.offset)


def _open_memmap(source: tuple) -> Tensor:
    filename, dtype, shape, offset = source
    # Copy-on-write mode gives torch a writable array (no warning) without ever writing the file.
    return torch.from_numpy(np.memmap(filename, dtype=dtype, mode="c", shape=shape, offset=offset))


def _as_tensor(array: Tensor | np.ndarray) -> Tensor:
    if isinstance(array, Tensor):
        return array
    source = _array_source(array)
    if source is not None:
        return _open_memmap(source)
    with warnings.catch_warnings():
        # A read-only array is fine: the sampler never writes to the topology.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def sample_without_replacement(count: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Floyd's algorithm for every row at once: ``k`` distinct positions out of ``count[i]``.

    Rows with ``count[i] <= k`` get all their positions. Each step draws one position per row
    and keeps it unless that row already holds it, in which case it takes the step's upper
    bound; this yields a uniformly random ``k``-subset per row at ``O(k^2)`` cost per row,
    independent of ``count``.

    Args:
        count: ``[n]`` number of items (neighbours) per row, each below ``2**31``.
        k: sample size per row, ``>= 0``.
        generator: random source on ``count``'s device.

    Returns:
        int32 ``[n, k]`` positions in ``[0, count[i])``; ``-1`` pads rows with ``count[i] < k``.
    """
    n = count.numel()
    device = count.device
    picks = torch.full((n, k), -1, dtype=torch.int32, device=device)
    if n == 0 or k == 0:
        return picks
    # float64 has 53 bits: positions stay uniform for any realistic degree.
    draws = torch.rand((k, n), dtype=torch.float64, generator=generator, device=device)
    count = count.int()
    for step in range(k):
        # Floyd's step over items 0..upper; rows with upper < 0 have fewer than k items and
        # start contributing only once upper reaches 0, after which every step picks `upper`.
        upper = count - (k - step)
        pick = torch.minimum((draws[step] * (upper + 1)).int(), upper)
        if step:
            taken = (picks[:, :step] == pick.unsqueeze(1)).any(1)
            pick = torch.where(taken, upper, pick)
        picks[:, step] = torch.where(upper >= 0, pick, -1)
    return picks


class UniformNeighborSampler(BaseSampler):
    """Uniform per-hop neighbour sampler without replacement (PyG ``BaseSampler``).

    For each hop ``h`` every node first reached at hop ``h - 1`` (the seeds for ``h = 1``)
    samples ``fan_out[h - 1]`` of its in-neighbours (``-1`` = all). Output follows PyG's
    ``NeighborSampler``: ``node`` lists seeds first (local ids ``0..B-1``, repeated seeds
    included), then the nodes first reached at each hop; ``row``/``col`` are local ids of the
    neighbour (source) and of the node whose neighbourhood was sampled (target), grouped by
    hop; ``edge`` holds edge ids (positions in ``row``); ``num_sampled_nodes`` (length
    ``L + 1``) and ``num_sampled_edges`` (length ``L``) count per hop, as ``trim_to_layer``
    expects.

    Randomness, in order of precedence:

    * ``generator_fn(inputs)`` returns the generator for each batch;
    * an ``int`` seed (or ``None``: one drawn from torch's global RNG) derives each batch's
      generator from ``(seed, epoch, first input id)``, so a batch's sample does not depend on
      which worker draws it or on how many batches came before (see :meth:`set_epoch`);
    * a ``torch.Generator`` is consumed batch after batch; only valid in one process
      (``num_workers=0``), since every worker would receive a copy of the same stream.

    Args:
        topology: CSC topology; sampling runs on its device.
        fan_out: neighbours per hop, ``-1`` for all.
        seed: ``int``, ``torch.Generator`` or ``None`` (see above).
        generator_fn: per-batch generator hook; excludes ``seed``.
        edge_permutation: maps positions in ``row`` to original edge ids when the topology
            was sorted from another edge order (as ``GraphStore.csc()`` returns it).
    """

    def __init__(
        self,
        topology: CSCTopology,
        fan_out: Sequence[int],
        seed: int | torch.Generator | None = None,
        generator_fn: GeneratorFn | None = None,
        edge_permutation: Tensor | None = None,
    ):
        self.topology = topology
        self.fan_out = validate_fan_out(fan_out)
        if generator_fn is not None and seed is not None:
            raise UsageError("give the sampler a seed or a generator_fn, not both")
        self.generator_fn = generator_fn
        self.generator: torch.Generator | None = None
        self.seed: int | None = None
        if isinstance(seed, torch.Generator):
            if seed.device != topology.device:
                raise UsageError(
                    f"sampler generator is on {seed.device} but the topology is on "
                    f"{topology.device}; create the generator on {topology.device}"
                )
            self.generator = seed
        elif generator_fn is None:
            self.seed = int(torch.randint(2**62, ())) if seed is None else int(seed)
        self.epoch = 0
        self._edge_permutation = edge_permutation
        self._table: Tensor | None = None

    @property
    def edge_permutation(self) -> Tensor | None:
        return self._edge_permutation

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose per-batch generators seeded sampling derives."""
        self.epoch = int(epoch)

    def batch_generator(self, inputs: NodeSamplerInput) -> torch.Generator:
        """The generator that samples the batch ``inputs``."""
        if self.generator_fn is not None:
            return self.generator_fn(inputs)
        if self.generator is not None:
            if get_worker_info() is not None:
                raise UsageError(
                    "a torch.Generator sampler seed cannot be shared by DataLoader workers; "
                    "pass an int seed or use num_workers=0"
                )
            return self.generator
        # Batches of one epoch partition the inputs, so the first input id names the batch.
        key = int(inputs.input_id[0]) if inputs.input_id is not None and inputs.node.numel() else -1
        generator = torch.Generator(device=self.topology.device)
        generator.manual_seed(derive_seed(self.seed, self.epoch, key))
        return generator

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> SamplerOutput:
        """Sample the neighbourhoods of ``index.node``; ``metadata`` is ``(input_id, time)``."""
        out = self.sample(index.node, self.batch_generator(index))
        out.metadata = (index.input_id, index.time)
        return out

    def sample_from_edges(self, index: EdgeSamplerInput, neg_sampling=None) -> SamplerOutput:
        raise UsageError("agc's neighbour sampler samples from seed nodes only, not from edges")

    def sample(self, seeds: Tensor, generator: torch.Generator) -> SamplerOutput:
        """Sample the multi-hop neighbourhood of ``seeds`` (global ids, any device).

        Returns:
            A ``SamplerOutput`` on the topology's device without ``metadata``.
        """
        table = self._lookup_table()
        try:
            return self._sample(table, seeds, generator)
        except BaseException:
            # The table may hold ids of the failed batch; a fresh one is allocated on next use.
            self._table = None
            raise

    def _sample(self, table: Tensor, seeds: Tensor, generator: torch.Generator) -> SamplerOutput:
        colptr, row = self.topology.colptr, self.topology.row
        device = colptr.device
        seeds = seeds.to(device=device, dtype=torch.long)
        num_seeds = seeds.numel()
        # A repeated seed keeps all its local ids in `node`; neighbours and later hops refer to
        # its first occurrence (amin is deterministic on every device, unlike index_put).
        table.scatter_reduce_(
            0,
            seeds,
            torch.arange(num_seeds, dtype=table.dtype, device=device),
            "amin",
            include_self=False,
        )
        nodes, rows, cols, edges = [seeds], [], [], []
        num_nodes, num_edges = [num_seeds], []
        # Each hop samples the nodes the previous hop reached first, whose local ids are the
        # contiguous range starting at `offset`.
        frontier, offset, total = seeds, 0, num_seeds
        for k in self.fan_out:
            edge, owner = _sample_edges(colptr, frontier, k, generator)
            neighbours = row.index_select(0, edge).long()
            source = self.topology._sources[1]
            name = source[0] if source else "the topology's row array (row.npy in a store)"
            check_neighbour_ids(neighbours, table.numel(), edge, name)
            local, new = _relabel(table, neighbours, total)
            rows.append(local)
            cols.append(owner + offset)
            edges.append(edge)
            nodes.append(new)
            num_nodes.append(new.numel())
            num_edges.append(edge.numel())
            frontier, offset, total = new, total, total + new.numel()
        node = torch.cat(nodes)
        table.index_fill_(0, node, -1)
        return SamplerOutput(
            node=node,
            row=_cat_long(rows, device),
            col=_cat_long(cols, device),
            edge=_cat_long(edges, device),
            num_sampled_nodes=num_nodes,
            num_sampled_edges=num_edges,
        )

    def _lookup_table(self) -> Tensor:
        # int32 local ids suffice (a batch never has 2^31 nodes) and halve the table, which
        # every worker process holds for all N nodes.
        if self._table is None:
            self._table = torch.full(
                (self.topology.num_nodes,), -1, dtype=torch.int32, device=self.topology.device
            )
        return self._table

    def __getstate__(self) -> dict:
        # Each process allocates its own lookup table instead of receiving an N-sized copy.
        state = self.__dict__.copy()
        state["_table"] = None
        return state


def validate_fan_out(fan_out: Sequence[int]) -> list[int]:
    """Check a per-hop fan-out list: each entry ``-1`` (all neighbours) or ``>= 0``."""
    if isinstance(fan_out, (int, str)):
        raise UsageError(f"fan_out: expected one entry per layer, e.g. [10, 10], got {fan_out!r}")
    if not all(isinstance(k, Integral) and not isinstance(k, bool) and k >= -1 for k in fan_out):
        raise UsageError(f"fan_out: expected integers >= 0 or -1 (all neighbours), got {fan_out}")
    return [int(k) for k in fan_out]


def _sample_edges(
    colptr: Tensor, nodes: Tensor, k: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Edge ids sampled for ``nodes``, grouped by node, and the position in ``nodes`` of each."""
    # index_select: on CPU it is several times faster than advanced indexing for 1-D gathers.
    start = colptr.index_select(0, nodes)
    degree = colptr.index_select(0, nodes + 1) - start
    if k < 0:
        owner = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), degree)
        # Rank of each edge inside its node's column: global position minus the column offset.
        first = torch.cumsum(degree, 0) - degree
        rank = torch.arange(owner.numel(), device=nodes.device) - first.index_select(0, owner)
        return start.index_select(0, owner) + rank, owner
    picks = sample_without_replacement(degree, k, generator)
    kept = (picks >= 0).view(-1).nonzero().view(-1)
    edge = (start.unsqueeze(1) + picks).view(-1).index_select(0, kept)
    return edge, kept.div(k, rounding_mode="floor")


def _relabel(table: Tensor, nodes: Tensor, num_known: int) -> tuple[Tensor, Tensor]:
    """Local ids of ``nodes``, giving ids ``num_known, num_known + 1, ...`` to unseen ones.

    Unseen nodes are numbered in order of first occurrence and written into ``table``.

    Returns:
        ``(local ids of nodes, unseen nodes in their new-id order)``.
    """
    count = nodes.numel()
    known = table.index_select(0, nodes)
    position = torch.arange(count, dtype=table.dtype, device=nodes.device)
    # Every occurrence of an unseen node claims its slot with the negative code
    # `position - count`; amin keeps the first occurrence (deterministically on any device),
    # while a known node scatters its own id and keeps it.
    claim = torch.where(known < 0, position - count, known)
    table.scatter_reduce_(0, nodes, claim, "amin", include_self=False)
    new = nodes.masked_select(table.index_select(0, nodes) == position - count)
    # `new` has no repeats, so scatter_ is deterministic here.
    table.scatter_(
        0,
        new,
        torch.arange(num_known, num_known + new.numel(), dtype=table.dtype, device=nodes.device),
    )
    return table.index_select(0, nodes).long(), new


def _cat_long(parts: list[Tensor], device: torch.device) -> Tensor:
    if not parts:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(parts).long()
