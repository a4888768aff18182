"""What models consume: the whole graph or one sampled subgraph, in one form.

A :class:`GraphBatch` holds the local nodes (seeds first), their features, local edges and the
global quantities some objectives need (degrees in the full graph, its node and edge counts).
:meth:`GraphBatch.block` gives the message-passing graph of one encoder layer: in a sampled
batch it is trimmed like PyG's ``trim_to_layer`` (layer ``i`` of ``L`` only computes the nodes
within ``L - i - 1`` hops of the seeds), in full-batch mode it is the whole graph. Blocks cache
their normalised adjacencies, so each is built once per batch.

A sampled batch normalises its aggregations in one of three ways (``normalization``):

* ``"rescale"`` (the default): the full graph's degrees, and a sum over ``s`` sampled of ``d``
  neighbours multiplied by ``d / s``: an unbiased estimate of the full-neighbourhood value,
  exact whenever a node's whole neighbourhood was sampled, so full-batch training, mini-batch
  training and layer-wise inference compute the same function.
* ``"block"``: each layer's block is normalised as a graph of its own — a destination's
  degree is its sampled in-edges, a source that is not a destination has none (its
  self-loop only).
* ``"subgraph"`` (what PyG's convs compute on a sampled subgraph): the degrees are counted in
  the whole sampled subgraph, so a node of the middle hops keeps its sampled in-edges when it
  is a source of the next layer; zero only for the outermost hop.

Inference is exact (the full graph's degrees) after any of them. They train differently
(``benchmarks/bench_sampled_norm.py``, DGI on Physics, GCN x2, 512, fan-out 15,15, NMI x 100):
with batch 2048 and 18 epochs ``"block"`` reached 71.97, 67.68, 70.39 over seeds 0-2 and
``"rescale"`` 64.38 (seed 0), ``"subgraph"`` 67.64; with batch 8192 and 75 epochs
``"rescale"`` reached 74.73, 71.30, 71.35, 63.62, 72.20 over seeds 0-4 and ``"block"`` 70.79
(seed 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from agc_cli.data.graph import Graph
from agc_cli.errors import UsageError
from agc_cli.models import rng
from agc_cli.models.sparse import SparseMatrix

Features = Tensor | SparseMatrix


class Block:
    """The bipartite message-passing graph of one layer: source nodes -> destination nodes.

    The destinations are the first ``num_dst`` sources (PyG's convention for sampled
    subgraphs), so a layer reads the destinations' own inputs as ``x_src[:num_dst]``.

    Args:
        edge_index: ``[2, E]`` local ``(source, target)``; targets ``< num_dst``, sources
            ``< num_src``.
        num_dst: number of destination nodes.
        degree: float ``[num_src]``: every source node's in-degree in the full graph.
        sampled_degree: float ``[num_dst]``: in-edges of every destination present in the
            block (the fan-out or fewer when sampled); default: counted from ``edge_index``.
        dst_offset: the destinations are the sources ``dst_offset .. dst_offset + num_dst - 1``
            (:attr:`dst_rows`): layer-wise inference over every node passes a whole table of
            inputs indexed by global id, and a batch of consecutive ids, instead of gathering
            a local copy.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_dst: int,
        degree: Tensor,
        sampled_degree: Tensor | None = None,
        dst_offset: int = 0,
    ):
        self.edge_index = edge_index
        self.num_src = int(degree.numel())
        self.num_dst = int(num_dst)
        self.degree = degree.float()
        if sampled_degree is None:
            sampled_degree = torch.bincount(edge_index[1], minlength=self.num_dst)
        self.sampled_degree = sampled_degree.float()
        self.dst_rows = slice(int(dst_offset), int(dst_offset) + self.num_dst)
        self._cache: dict[str, Any] = {}

    def adjacency(self, kind: str) -> SparseMatrix:
        """``[num_dst, num_src]`` propagation matrix (self-loops not included).

        ``kind``: ``"gcn"`` (symmetric normalisation with the self-loop counted in the degree),
        ``"gcn_self"`` (the same with the self-loops stored: one product computes the whole
        GCN step, and its backward is one transposed product instead of a sliced copy),
        ``"mean"`` (average over neighbours) or ``"sum"``.
        """
        key = f"adjacency:{kind}"
        if key not in self._cache:
            self._cache[key] = self._build_adjacency(kind)
        return self._cache[key]

    def _build_adjacency(self, kind: str) -> SparseMatrix:
        src, dst = self.edge_index
        d_dst = self.degree[self.dst_rows]
        if kind == "mean":
            values = self.sampled_degree.reciprocal()[dst]
        else:
            # Rescaling by d/s turns the sum over sampled neighbours into an estimate of the full
            # sum; it is 1 when every neighbour is present.
            scale = (d_dst / self.sampled_degree.clamp(min=1))[dst]
            if kind == "sum":
                values = scale
            elif kind in ("gcn", "gcn_self"):
                values = scale * ((d_dst[dst] + 1) * (self.degree[src] + 1)).rsqrt()
            else:
                raise ValueError(f"unknown adjacency kind {kind!r}")
        shape = (self.num_dst, self.num_src)
        if kind == "gcn_self":
            loops = torch.arange(self.num_dst, device=src.device)
            own = loops + self.dst_rows.start  # the destinations' own columns
            loop_values = self.gcn_self_weight().view(-1)
            if _grouped(dst):
                return _with_loops(dst, src, values, own, loop_values, shape)
            src, dst = torch.cat([src, own]), torch.cat([dst, loops])
            values = torch.cat([values, loop_values])
        return SparseMatrix.from_edges(dst, src, values, shape)

    def gcn_self_weight(self) -> Tensor:
        """``[num_dst, 1]`` weight of each destination's self-loop under GCN normalisation."""
        return (self.degree[self.dst_rows] + 1).reciprocal()[:, None]

    def attention_edges(self) -> tuple[Tensor, Tensor]:
        """``(source, target)`` with self-loops replaced by one per destination (as GATConv)."""
        if "attention" not in self._cache:
            src, dst = self.edge_index
            keep = src != dst
            loop = torch.arange(self.num_dst, device=src.device)
            self._cache["attention"] = (
                torch.cat([src[keep], loop + self.dst_rows.start]),
                torch.cat([dst[keep], loop]),
            )
        return self._cache["attention"]


def _grouped(dst: Tensor) -> bool:
    """Whether the targets are grouped in ascending order (layer-wise inference), on the CPU."""
    if dst.device.type != "cpu" or dst.numel() < 2:
        return dst.device.type == "cpu"
    return bool((dst[1:] >= dst[:-1]).all())


def _with_loops(
    dst: Tensor, src: Tensor, values: Tensor, loop_src: Tensor, loop_values: Tensor, shape
) -> SparseMatrix:
    """CSR of edges grouped by target plus one self-loop closing each row, built in place of
    a concatenation and a sort of every entry."""
    rows, edges = shape[0], dst.numel()
    counts = torch.bincount(dst, minlength=rows) + 1
    crow = torch.zeros(rows + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=crow[1:])
    # An edge moves down by the loops of the rows before it; each row's loop is its last entry.
    at = torch.arange(edges) + dst
    last = crow[1:] - 1
    col = torch.empty(edges + rows, dtype=src.dtype)
    col[at], col[last] = src, loop_src.to(src.dtype)
    weight = torch.empty(edges + rows, dtype=values.dtype)
    weight[at], weight[last] = values, loop_values.to(values.dtype)
    return SparseMatrix(crow, col, weight, shape)


# A sampled batch's aggregation weights (module docstring); the first is the default.
NORMALIZATIONS = ("rescale", "block", "subgraph")


class PairLayout:
    """The order of two stacked copies (views) of a batch's nodes: hop by hop, and within
    each hop the first view's nodes, then the second's.

    Every layer's destinations are the nodes of its innermost hops, so in this order the
    destinations of both views are again the first rows (and the seeds of both views the
    first ``2 * batch_size``), as a :class:`Block` needs. A full batch is one hop: the first
    view's nodes, then the second's.

    Args:
        sizes: nodes per hop, hop 0 first (in the batch's own order, hop by hop).
    """

    def __init__(self, sizes: list[int], device: torch.device | str = "cpu"):
        counts = torch.tensor(sizes, device=device)
        starts = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        first = torch.arange(total, device=device) + torch.repeat_interleave(
            starts, counts, output_size=total
        )
        #: ``[2, nodes]``: the stacked position of node ``i`` in view 0 and in view 1.
        self.index = torch.stack(
            [first, first + torch.repeat_interleave(counts, counts, output_size=total)]
        )
        #: One hop (a full batch): the stacked order is ``[view 0; view 1]`` itself.
        self.is_identity = len(sizes) == 1
        self._orders: dict[int, Tensor] = {}

    def order(self, num_dst: int) -> Tensor:
        """``[2 * num_dst]``: for every stacked row, its row in ``[view 0; view 1]`` of the
        first ``num_dst`` nodes (``num_dst`` a whole number of hops)."""
        if num_dst not in self._orders:
            order = torch.empty(2 * num_dst, dtype=torch.long, device=self.index.device)
            rows = torch.arange(num_dst, device=self.index.device)
            order[self.index[0, :num_dst]] = rows
            order[self.index[1, :num_dst]] = rows + num_dst
            self._orders[num_dst] = order
        return self._orders[num_dst]


@dataclass(eq=False)
class GraphBatch:
    """The whole graph (full-batch) or one sampled subgraph, as every model consumes it.

    Attributes:
        x: features of the local nodes: dense ``[num_nodes, F]`` or a :class:`SparseMatrix`.
        edge_index: ``[2, E]`` local ``(source, target)``; in a sampled batch ordered by hop.
        batch_size: seed nodes, the rows ``0 .. batch_size - 1`` (all nodes in full-batch).
        n_id: global id of every local node.
        degree: float ``[num_nodes]``: in-degree of every local node in the full graph.
        total_nodes: nodes of the full graph.
        total_edges: directed edges of the full graph (twice the undirected edge count).
        num_sampled_nodes: nodes per hop, hop 0 (seeds) first; ``None`` in full-batch.
        num_sampled_edges: edges per hop, hop 1 first; ``None`` in full-batch.
        normalization: a sampled batch's aggregation weights, ``"rescale"``, ``"block"``
            or ``"subgraph"`` (see the module docstring); unused in full-batch.
    """

    x: Features
    edge_index: Tensor
    batch_size: int
    n_id: Tensor
    degree: Tensor
    total_nodes: int
    total_edges: int
    num_sampled_nodes: list[int] | None = None
    num_sampled_edges: list[int] | None = None
    normalization: str = "rescale"
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def full(cls, graph: Graph, device: torch.device | str = "cpu") -> GraphBatch:
        """The whole graph; sparse (CSR) features stay sparse."""
        x = SparseMatrix.from_csr(graph.x) if graph.sparse_features else graph.x
        return cls(
            x=x.to(device),
            edge_index=graph.edge_index().to(device),
            batch_size=graph.num_nodes,
            n_id=torch.arange(graph.num_nodes, device=device),
            degree=graph.degree().to(device).float(),
            total_nodes=graph.num_nodes,
            total_edges=graph.num_edges,
        )

    @classmethod
    def from_sampled(
        cls,
        data: Any,
        graph: Graph,
        device: torch.device | str = "cpu",
        normalization: str = "rescale",
    ) -> GraphBatch:
        """A batch from the neighbour sampler's PyG ``Data``.

        ``data`` has ``edge_index`` (local, source -> target), ``n_id``, ``batch_size`` and
        ``num_sampled_nodes``/``num_sampled_edges`` (per hop, PyG's conventions). Its ``x``
        (dense rows or CSR rows) is used when present; otherwise the rows are gathered from
        ``graph``. Sparse features stay sparse either way.
        """
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization: {normalization!r} is not one of {NORMALIZATIONS}")
        n_id = data.n_id
        x = getattr(data, "x", None)
        if x is None and graph.sparse_features:
            x = graph.sparse_feature_rows(n_id)
        elif x is None:
            x = graph.x.index_select(0, n_id.to(graph.x.device))
        if x.layout == torch.sparse_csr:
            x = SparseMatrix.from_csr(x)
        # Degrees of the local nodes only, read off the CSC pointers: O(batch), not O(N).
        index = n_id.to(graph.colptr.device)
        degree = graph.colptr[index + 1] - graph.colptr[index]
        return cls(
            x=x.to(device),
            edge_index=data.edge_index.to(device),
            batch_size=int(data.batch_size),
            n_id=n_id.to(device),
            degree=degree.to(device).float(),
            total_nodes=graph.num_nodes,
            total_edges=graph.num_edges,
            num_sampled_nodes=[int(n) for n in data.num_sampled_nodes],
            num_sampled_edges=[int(n) for n in data.num_sampled_edges],
            normalization=normalization,
        )

    @property
    def num_nodes(self) -> int:
        return int(self.n_id.numel())

    @property
    def is_full(self) -> bool:
        return self.num_sampled_nodes is None

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    def block(self, layer: int, num_layers: int) -> Block:
        """Message-passing graph of encoder layer ``layer`` (0-based) out of ``num_layers``.

        Sampled: the destinations are the nodes within ``num_layers - layer - 1`` hops of the
        seeds, the sources one hop further, the edges those into the destinations.
        """
        if self.is_full:
            if "full" not in self._cache:
                self._cache["full"] = Block(
                    self.edge_index, self.num_nodes, self.degree, self.degree
                )
            return self._cache["full"]
        hops = len(self.num_sampled_edges)
        if num_layers > hops:
            raise UsageError(
                f"num_layers: the encoder has {num_layers} layers but the batch was sampled "
                f"with {hops} hops; give one fan-out per layer"
            )
        depth = num_layers - layer
        key = ("hops", depth)
        if key not in self._cache:
            num_dst = sum(self.num_sampled_nodes[:depth])
            num_src = sum(self.num_sampled_nodes[: depth + 1])
            num_edges = sum(self.num_sampled_edges[:depth])
            sampled = self.sampled_degree()
            if self.normalization == "block":
                # Counted inside this block: sources that are not destinations have no in-edges.
                degree = torch.zeros(num_src, device=self.device)
                degree[:num_dst] = sampled[:num_dst]
            else:
                degree = sampled if self.normalization == "subgraph" else self.degree
            self._cache[key] = Block(
                self.edge_index[:, :num_edges], num_dst, degree[:num_src], sampled[:num_dst]
            )
        return self._cache[key]

    def pair_layout(self, num_layers: int) -> PairLayout:
        """Where each node of two stacked views of this batch goes (see :class:`PairLayout`)."""
        key = ("pair", num_layers)
        if key not in self._cache:
            sizes = [self.num_nodes] if self.is_full else self.num_sampled_nodes[: num_layers + 1]
            self._cache[key] = PairLayout(sizes, self.device)
        return self._cache[key]

    def paired_block(self, layer: int, num_layers: int) -> Block:
        """:meth:`block` of a graph made of two disjoint copies of this batch, its nodes in
        :meth:`pair_layout`'s order: a layer computes two views (DGI's clean and corrupted
        ones) in one pass, destinations first as every block has them."""
        key = ("paired", layer, num_layers)
        if key not in self._cache:
            base = self.block(layer, num_layers)
            index = self.pair_layout(num_layers).index
            src, dst = base.edge_index
            edge_index = torch.cat(
                [torch.stack([index[v][src], index[v][dst]]) for v in (0, 1)], dim=1
            )

            def stacked(values: Tensor) -> Tensor:
                out = values.new_empty(2 * values.numel())
                for v in (0, 1):
                    out[index[v][: values.numel()]] = values
                return out

            self._cache[key] = Block(
                edge_index, 2 * base.num_dst, stacked(base.degree), stacked(base.sampled_degree)
            )
        return self._cache[key]

    def seed_block(self) -> Block:
        """Edges between seed nodes only (every edge in full-batch), as a block over the seeds.

        Its ``sampled_degree`` counts all sampled in-edges of each seed, so the ``"sum"``
        adjacency estimates sums over the seeds' full neighbourhoods restricted to seeds.
        """
        if self.is_full:
            return self.block(0, 1)
        if "seeds" not in self._cache:
            src, dst = self.edge_index[:, : self.num_sampled_edges[0]]
            keep = src < self.batch_size
            self._cache["seeds"] = Block(
                torch.stack([src[keep], dst[keep]]),
                self.batch_size,
                self.degree[: self.batch_size],
                self.sampled_degree()[: self.batch_size],
            )
        return self._cache["seeds"]

    def sampled_degree(self) -> Tensor:
        """float ``[num_nodes]``: in-edges of every local node present in the batch."""
        if self.is_full:
            return self.degree
        if "sampled_degree" not in self._cache:
            counts = torch.bincount(self.edge_index[1], minlength=self.num_nodes)
            self._cache["sampled_degree"] = counts.float()
        return self._cache["sampled_degree"]

    def drop_edges(self, p: float, generator: torch.Generator | None = None) -> GraphBatch:
        """A copy without a random fraction ``p`` of the edges (an augmented view).

        Degrees drop with the removed edges, so the view is the full graph minus those edges.
        """
        keep = rng.uniform(self.edge_index.shape[1], self.device, generator) >= p
        dropped = self.edge_index[1, ~keep]
        degree = self.degree - torch.bincount(dropped, minlength=self.num_nodes).float()
        counts = None
        if not self.is_full:
            hop = torch.repeat_interleave(
                torch.arange(len(self.num_sampled_edges), device=self.device),
                torch.tensor(self.num_sampled_edges, device=self.device),
            )
            counts = torch.bincount(hop[keep], minlength=len(self.num_sampled_edges)).tolist()
        return replace(
            self, edge_index=self.edge_index[:, keep], degree=degree, num_sampled_edges=counts,
            _cache={},
        )  # fmt: skip

    def with_features(self, x: Features) -> GraphBatch:
        """A copy with other features for the same nodes (e.g. masked feature columns)."""
        return replace(self, x=x)
