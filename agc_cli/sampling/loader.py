"""Mini-batch loaders: PyG's ``NodeLoader`` driven by agc's (or PyG's) neighbour sampler.

Batches are PyG ``Data`` objects with ``x`` (float rows of the sampled nodes, seeds first: dense, or
a sparse CSR tensor when the graph's features are sparse),
``edge_index`` (local ids, neighbour -> sampled node), ``n_id``, ``e_id``, ``batch_size``,
``num_sampled_nodes``, ``num_sampled_edges``, ``input_id`` and ``y`` when the graph has labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
import torch_geometric.typing
from torch import Tensor
from torch.autograd.profiler import record_function
from torch.utils.data import Sampler
from torch_geometric.data import EdgeAttr, FeatureStore, GraphStore, TensorAttr
from torch_geometric.data.graph_store import EdgeLayout
from torch_geometric.loader import NodeLoader
from torch_geometric.loader.utils import index_select
from torch_geometric.sampler import BaseSampler

from agc_cli.data.graph import Graph
from agc_cli.data.store import StoredGraph
from agc_cli.errors import UsageError
from agc_cli.sampling.neighbor import (
    CSCTopology,
    UniformNeighborSampler,
    derive_seed,
    validate_fan_out,
)
from agc_cli.sampling.shard import shard_batches

SAMPLER_KINDS = ("auto", "agc", "pyg")

# CSR feature rows cross from DataLoader workers through torch's sparse rebuild, which warns on
# every batch; the rows were built by agc from a valid CSR matrix.
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

GraphSource = Graph | tuple[FeatureStore, GraphStore]


class GraphFeatureStore(FeatureStore):
    """Read-only PyG ``FeatureStore`` over a :class:`Graph`'s ``x`` (and ``y``).

    Sparse (bag-of-words) features come out as float32 CSR rows
    (:meth:`Graph.sparse_feature_rows`): a sampled block of such features is 99% zeros, and
    densifying it would make the first layer a dense ``[nodes, features]`` product. Dense rows
    of an on-disk store (read in file order, float32 whatever the stored dtype) are gathered
    with :meth:`Graph.feature_rows`.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph

    def _tensors(self) -> dict[str, Tensor]:
        tensors = {"x": self.graph.x}
        if self.graph.y is not None:
            tensors["y"] = self.graph.y
        return tensors

    def _get_tensor(self, attr: TensorAttr) -> Tensor | None:
        # Labelled for `agc profile` (the name matches agc_cli.engine.profiling's stages).
        with record_function("agc::feature fetch"):
            return self._gather(attr)

    def _gather(self, attr: TensorAttr) -> Tensor | None:
        if attr.attr_name not in self._tensors():
            return None
        index = attr.index
        if index is None:
            index = torch.arange(self.graph.num_nodes)
        index = torch.as_tensor(index, dtype=torch.long)
        if attr.attr_name == "x":
            index = index.to(self.graph.x.device)
            if self.graph.sparse_features:
                return self.graph.sparse_feature_rows(index)
            if isinstance(self.graph, StoredGraph):
                return self.graph.feature_rows(index)
            # PyG's gather writes into shared memory inside a DataLoader worker, sparing the
            # copy the worker would otherwise make to send the batch.
            return index_select(self.graph.x, index)
        return self.graph.y.index_select(0, index.to(self.graph.y.device))

    def _get_tensor_size(self, attr: TensorAttr) -> tuple[int, ...] | None:
        tensor = self._tensors().get(attr.attr_name)
        return None if tensor is None else tuple(tensor.shape)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        return [TensorAttr(None, name) for name in self._tensors()]

    def _put_tensor(self, tensor: Tensor, attr: TensorAttr) -> bool:
        return False

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        return False


class GraphTopologyStore(GraphStore):
    """Read-only PyG ``GraphStore`` holding one CSC edge set (homogeneous graph)."""

    def __init__(self, topology: CSCTopology):
        super().__init__()
        self.topology = topology

    def _edge_attr(self) -> EdgeAttr:
        size = (self.topology.num_nodes, self.topology.num_nodes)
        return EdgeAttr(None, EdgeLayout.CSC, is_sorted=True, size=size)

    def _get_edge_index(self, edge_attr: EdgeAttr) -> tuple[Tensor, Tensor] | None:
        if edge_attr.layout != EdgeLayout.CSC:
            return None
        # PyG orders a CSC pair as (row, colptr).
        return self.topology.row, self.topology.colptr

    def get_all_edge_attrs(self) -> list[EdgeAttr]:
        return [self._edge_attr()]

    def _put_edge_index(self, edge_index: tuple[Tensor, Tensor], edge_attr: EdgeAttr) -> bool:
        return False

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        return False


class EpochOrder(Sampler[int]):
    """Seed positions of one epoch: a permutation that is a pure function of ``(seed, epoch)``.

    ``set_epoch(epoch, start_batch)`` skips the first ``start_batch`` batches of that epoch's
    order, so a resumed epoch yields exactly the remaining batches, with the same boundaries.
    """

    def __init__(self, num_items: int, batch_size: int, shuffle: bool, seed: int):
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start_batch: int = 0, start_seed: int | None = None) -> None:
        """Select ``epoch``; skip its first ``start_batch`` batches or, if given, its first
        ``start_seed`` seeds (the position a checkpoint recorded)."""
        self.epoch = int(epoch)
        start = int(start_batch) * self.batch_size if start_seed is None else int(start_seed)
        self.start = min(start, self.num_items)

    def order(self) -> Tensor:
        """The full seed-position order of the current epoch."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self) -> Iterator[int]:
        # Chunks keep the Python ints of a 100M-seed epoch from existing all at once.
        for chunk in self.order()[self.start :].split(1 << 20):
            yield from chunk.tolist()

    def __len__(self) -> int:
        return self.num_items - self.start


class ShardedEpochBatches(Sampler[list[int]]):
    """One data-parallel rank's seed batches of an epoch (see :mod:`agc_cli.sampling.shard`).

    Wraps an :class:`EpochOrder` (the permutation every rank shares) and yields this rank's
    batches of seed positions, from the order's start position on.
    """

    def __init__(self, order: EpochOrder, rank: int, world_size: int):
        self.order = order
        self.rank = rank
        self.world_size = world_size
        self.batch_size = order.batch_size
        self.seed = order.seed

    def set_epoch(self, epoch: int, start_batch: int = 0, start_seed: int | None = None) -> None:
        if start_seed is None:  # ``start_batch`` counts global batches of world × batch_size
            start_seed = int(start_batch) * self.batch_size * self.world_size
        self.order.set_epoch(epoch, start_seed=start_seed)

    def batches(self) -> list[Tensor]:
        remaining = self.order.order()[self.order.start :]
        return shard_batches(remaining.split(self.batch_size), self.rank, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches():
            yield batch.tolist()

    def __len__(self) -> int:
        remaining = self.order.num_items - self.order.start
        full, tail = divmod(remaining, self.batch_size * self.world_size)
        if tail >= self.world_size or (tail and not full):
            full += 1
        return full


class SubgraphLoader(NodeLoader):
    """PyG ``NodeLoader`` whose seed order and neighbour samples follow ``(seed, epoch)``.

    Call :meth:`set_epoch` before iterating each epoch. Worker processes copy the sampler when
    an iteration starts, which is why persistent workers are not offered: they would keep
    sampling with the epoch they started with.
    """

    def __init__(
        self,
        data: GraphSource,
        node_sampler: BaseSampler,
        input_nodes: Tensor,
        order: EpochOrder | ShardedEpochBatches,
        num_workers: int,
        drop_last: bool,
        pin_memory: bool,
    ):
        batching = (
            {"batch_sampler": order}
            if isinstance(order, ShardedEpochBatches)
            else {"batch_size": order.batch_size, "sampler": order, "drop_last": drop_last}
        )
        super().__init__(
            data,
            node_sampler,
            input_nodes=input_nodes,
            **batching,
            num_workers=num_workers,
            pin_memory=pin_memory,
            # A private generator for the DataLoader's worker base seed: otherwise each new
            # epoch iterator draws from torch's global RNG, and a resumed run would diverge.
            generator=torch.Generator().manual_seed(derive_seed(order.seed, 0x5EED)),
        )
        self.order = order

    def set_epoch(self, epoch: int, start_batch: int = 0, start_seed: int | None = None) -> None:
        """Select the epoch to iterate and skip its first ``start_batch`` batches, or its first
        ``start_seed`` seeds (resume)."""
        self.order.set_epoch(epoch, start_batch, start_seed)
        if isinstance(self.node_sampler, UniformNeighborSampler):
            self.node_sampler.set_epoch(epoch)


def as_stores(data: GraphSource) -> tuple[FeatureStore, GraphStore]:
    """PyG ``(FeatureStore, GraphStore)`` for a :class:`Graph`; a given pair is returned as is."""
    if isinstance(data, Graph):
        return GraphFeatureStore(data), GraphTopologyStore(CSCTopology(data.colptr, data.row))
    return data


def build_sampler(
    kind: str,
    data: GraphSource,
    fan_out: Sequence[int],
    seed: int | torch.Generator | None = None,
) -> BaseSampler:
    """The neighbour sampler named by ``kind``.

    Args:
        kind: ``"agc"`` (:class:`UniformNeighborSampler`), ``"pyg"`` (PyG's
            ``NeighborSampler``, needs ``pyg-lib`` and draws from torch's global RNG, so
            ``seed`` does not apply), or ``"auto"``: ``"pyg"`` when ``pyg-lib`` is importable,
            else ``"agc"``.
        data: a :class:`Graph` or a PyG ``(FeatureStore, GraphStore)`` pair.
        fan_out: neighbours per hop, ``-1`` for all.
        seed: see :class:`UniformNeighborSampler`.
    """
    if kind not in SAMPLER_KINDS:
        raise UsageError(f"sampler: expected one of {', '.join(SAMPLER_KINDS)}, got {kind!r}")
    fan_out = validate_fan_out(fan_out)
    if kind == "auto":
        kind = "pyg" if torch_geometric.typing.WITH_PYG_LIB else "agc"
    feature_store, graph_store = as_stores(data)
    if kind == "pyg":
        if not torch_geometric.typing.WITH_PYG_LIB:
            raise UsageError("sampler: 'pyg' needs pyg-lib, which is not installed; use 'agc'")
        from torch_geometric.sampler import NeighborSampler

        return NeighborSampler((feature_store, graph_store), num_neighbors=fan_out)
    if isinstance(graph_store, GraphTopologyStore):
        # Keeps a file-backed topology file-backed (it pickles as paths).
        return UniformNeighborSampler(graph_store.topology, fan_out, seed)
    # PyG orders CSC as (row, colptr, permutation of the original edge order).
    row, colptr, perm = graph_store.csc()
    return UniformNeighborSampler(CSCTopology(colptr, row), fan_out, seed, edge_permutation=perm)


def make_loader(
    data: GraphSource,
    input_nodes: Tensor | None,
    fan_out: Sequence[int],
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int | None = None,
    sampler: str = "auto",
    drop_last: bool = False,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> SubgraphLoader:
    """A loader of sampled subgraphs around batches of ``input_nodes``.

    Args:
        data: a :class:`Graph` or a PyG ``(FeatureStore, GraphStore)`` pair.
        input_nodes: seed node ids or a boolean mask over nodes; ``None`` for all nodes.
        fan_out: neighbours per hop (one entry per layer), ``-1`` for all.
        batch_size: seed nodes per batch.
        shuffle: permute the seeds each epoch (a pure function of ``(seed, epoch)``).
        num_workers: DataLoader worker processes sampling and gathering features.
        seed: seed of the epoch order and of neighbour sampling; drawn from torch's global
            RNG if ``None``.
        sampler: ``"auto"``, ``"agc"`` or ``"pyg"`` (see :func:`build_sampler`).
        drop_last: drop the last incomplete batch.
        pin_memory: return batches in pinned memory (faster copies to a GPU).
        rank, world_size: data-parallel position: with ``world_size > 1`` the loader yields
            this rank's shard of every epoch (:class:`ShardedEpochBatches`; ``drop_last`` does
            not apply).

    Returns:
        A :class:`SubgraphLoader` yielding PyG ``Data`` batches (see the module docstring).
    """
    if batch_size < 1:
        raise UsageError(f"batch_size: expected >= 1, got {batch_size}")
    if num_workers < 0:
        raise UsageError(f"num_workers: expected >= 0, got {num_workers}")
    stores = as_stores(data)
    input_nodes = _seed_ids(input_nodes, _num_nodes(stores[1]))
    if seed is None:
        seed = int(torch.randint(2**62, ()))
    node_sampler = build_sampler(sampler, stores, fan_out, seed)
    order = EpochOrder(input_nodes.numel(), batch_size, shuffle, seed)
    if world_size > 1:
        order = ShardedEpochBatches(order, rank, world_size)
    return SubgraphLoader(
        stores, node_sampler, input_nodes, order, num_workers, drop_last, pin_memory
    )


def _num_nodes(graph_store: GraphStore) -> int:
    edge_attr = graph_store.get_all_edge_attrs()[0]
    if edge_attr.size is not None:
        return int(edge_attr.size[1])
    _, colptr, _ = graph_store.csc()
    return int(colptr.numel() - 1)


def _seed_ids(input_nodes: Tensor | None, num_nodes: int) -> Tensor:
    """Seed ids as an int64 CPU tensor, checked against the node range."""
    if input_nodes is None:
        return torch.arange(num_nodes)
    input_nodes = torch.as_tensor(input_nodes).cpu()
    if input_nodes.dtype == torch.bool:
        if input_nodes.numel() != num_nodes:
            raise UsageError(
                f"input_nodes: boolean mask has {input_nodes.numel()} entries for {num_nodes} nodes"
            )
        return input_nodes.nonzero().view(-1)
    input_nodes = input_nodes.long().view(-1)
    if input_nodes.numel() and (int(input_nodes.min()) < 0 or int(input_nodes.max()) >= num_nodes):
        raise UsageError(f"input_nodes: ids must lie in [0, {num_nodes})")
    return input_nodes
