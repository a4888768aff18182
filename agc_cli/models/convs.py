"""Graph convolutions written as "transform, then propagate".

Each conv splits into :meth:`transform` (one dense or sparse matmul of the source features with
all of the layer's weights concatenated) and :meth:`propagate` (aggregation over a
:class:`~agc_cli.models.batch.Block`'s cached sparse adjacency). Since ``A (X W) == (A X) W``
this computes what PyG's convs compute, but lets bag-of-words features stay sparse through the
only matmul that touches them, and lets a caller reuse the transform (DGI's corruption is the
clean transform with its rows permuted).

Semantics follow PyG: GCN (``GCNConv``: symmetric normalisation with self-loops), GraphSAGE
(``SAGEConv``: mean aggregation plus a root weight), GIN (``GINConv`` with ``eps = 0`` and a
two-layer MLP), GAT (``GATConv``: per-edge attention, self-loops, heads concatenated or
averaged). The optional residual is a bias-free linear projection of the layer input, as in
``GATConv(residual=True)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agc_cli.models.batch import Block, Features, PairLayout
from agc_cli.models.sparse import SparseMatrix, chain_matmul

# Cost of re-sorting one adjacency entry, in copied elements of a dense matrix (rough).
REMAP_COST = 8


def _glorot_(weight: Tensor) -> None:
    bound = math.sqrt(6.0 / (weight.shape[-2] + weight.shape[-1]))
    nn.init.uniform_(weight, -bound, bound)


def _plus_residual(out: Tensor, residual: Tensor | int) -> Tensor:
    """``out + residual`` in place (``out`` is a fresh result, ``residual`` 0 when absent)."""
    return out if isinstance(residual, int) else out.add_(residual)


class TransformPropagateConv(nn.Module):
    """A conv as one matmul of the input with ``weight`` (its parts side by side), then
    a propagation of the result.

    Subclasses list their weight parts in ``parts`` (name -> width) and implement
    :meth:`propagate`; :meth:`part` reads one part's columns of the transform.
    """

    def __init__(self, in_channels: int, parts: dict[str, int]):
        super().__init__()
        self.in_channels = in_channels
        self.parts = dict(parts)
        self._slices: dict[str, slice] = {}
        width = 0
        for name, part_width in self.parts.items():
            self._slices[name] = slice(width, width + part_width)
            width += part_width
        self.weight = nn.Parameter(torch.empty(in_channels, width))

    def weight_part(self, name: str) -> Tensor:
        return self.weight[:, self._slices[name]]

    def part(self, t: Tensor | dict[str, Tensor], name: str) -> Tensor:
        """One part's columns of the transform ``t``, or that part when ``t`` is already split
        (:meth:`split_parts`)."""
        if isinstance(t, dict):
            return t[name]
        if len(self.parts) == 1:  # the whole transform: no slice (its backward would copy)
            return t
        return t[:, self._slices[name]]

    def split_parts(self, t: Tensor) -> dict[str, Tensor]:
        """The transform as one contiguous tensor per part: what layer-wise inference keeps
        for every node, since a product gathering rows of a column slice copies it first."""
        return {name: self.part(t, name).contiguous() for name in self.parts}

    def transform(self, x: Features) -> Tensor:
        """``x @ weight`` for dense or sparse ``x``; the input of :meth:`propagate`."""
        if isinstance(x, SparseMatrix):
            return x.matmul(self.weight)
        return x @ self.weight

    def propagate(self, t: Tensor, block: Block) -> Tensor:
        raise NotImplementedError

    def propagate_permuted(self, t: Tensor, block: Block, perm: Tensor) -> Tensor:
        """``propagate(t[perm], block)``: the layer on row-permuted inputs."""
        return self.propagate(permute_rows(t, perm), block)

    def forward(self, x: Features, block: Block) -> Tensor:
        return self.propagate(self.transform(x), block)

    def forward_pair(self, x: Features, block: Block, perm: Tensor) -> tuple[Tensor, Tensor]:
        """``(forward(x, block), forward(x[perm], block))``: the layer on its inputs and on
        the inputs with rows permuted (DGI's corruption), sharing one transform."""
        t = self.transform(x)
        return self.propagate(t, block), self.propagate_permuted(t, block, perm)

    def forward_pair_stacked(
        self, x: Features, block: Block, perm: Tensor, layout: PairLayout
    ) -> Tensor:
        """:meth:`forward_pair`'s two outputs as one ``[2 * num_dst, out]`` tensor in the
        stacked order of ``layout`` (the input of ``GraphBatch.paired_block``)."""
        both = torch.cat(self.forward_pair(x, block, perm))
        return both if layout.is_identity else both.index_select(0, layout.order(block.num_dst))

    def _residual(self, t: Tensor, block: Block) -> Tensor | int:
        return self.part(t, "residual")[block.dst_rows] if "residual" in self.parts else 0


class GCNConv(TransformPropagateConv):
    """``Â X W + b`` with ``Â = D^-1/2 (A + I) D^-1/2`` (PyG's ``GCNConv``).

    Args:
        reassociate: for dense inputs, compute ``(Â X) W`` instead of ``Â (X W)`` where that
            takes fewer FLOPs (far fewer destinations than sources: a sampled batch's upper
            layers). The encoder sets it above its first layer, whose inputs are dense for
            sparse and dense features alike, so both layouts keep the same arithmetic.
    """

    def __init__(
        self, in_channels: int, out_channels: int, residual: bool = False, reassociate: bool = False
    ):
        parts = {"lin": out_channels} | ({"residual": out_channels} if residual else {})
        super().__init__(in_channels, parts)
        self.out_channels = out_channels
        self.reassociate = reassociate
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name in self.parts:
            _glorot_(self.weight_part(name).data)
        nn.init.zeros_(self.bias)

    def propagate(self, t: Tensor, block: Block) -> Tensor:
        # Self-loops stored in the adjacency: the whole step (and its backward) is one product.
        out = block.adjacency("gcn_self").matmul(self.part(t, "lin")).add_(self.bias)
        return _plus_residual(out, self._residual(t, block))

    def propagate_permuted(self, t: Tensor, block: Block, perm: Tensor) -> Tensor:
        adjacency = block.adjacency("gcn_self")
        # A (P t) with the permutation moved into A's columns saves a [sources, width] copy of
        # t and of its gradient, at the cost of sorting A's entries for the transpose: worth it
        # while A is much sparser than t is wide (a sampled batch, a citation graph), not on
        # edge-heavy graphs.
        if "residual" in self.parts or adjacency.nnz * REMAP_COST > t.numel():
            return super().propagate_permuted(t, block, perm)
        return adjacency.remap_columns(perm).matmul(t).add_(self.bias)

    def forward(self, x: Features, block: Block) -> Tensor:
        adjacency = block.adjacency("gcn_self")
        if "residual" in self.parts:  # needs the transform of every destination itself
            return super().forward(x, block)
        if isinstance(x, SparseMatrix):
            if x.shape[0] != adjacency.shape[1]:
                return super().forward(x, block)
            # A (X W) one column block at a time: the [sources, width] transform never exists.
            return chain_matmul([adjacency, x], self.weight).add_(self.bias)
        # A (x W) == (A x) W, and the second form multiplies only the destinations' rows by W:
        # far cheaper in a sampled batch's upper layers, whose destinations are a fraction of
        # their sources (Physics, DGI with 2 layers: 2,048 of 14,900 nodes, 7x fewer FLOPs).
        width_in, width_out = self.weight.shape
        transform_first = x.shape[0] * width_in * width_out + adjacency.nnz * width_out
        propagate_first = adjacency.nnz * width_in + block.num_dst * width_in * width_out
        if self.reassociate and propagate_first < transform_first:
            return torch.addmm(self.bias, adjacency.matmul(x), self.weight)
        return super().forward(x, block)

    def forward_pair(self, x: Features, block: Block, perm: Tensor) -> tuple[Tensor, Tensor]:
        if not self._stacks_views(x, block):
            return super().forward_pair(x, block, perm)
        both = block.adjacency("gcn_self").stack_remapped(perm)
        pos, neg = self._pair_product(x, both).split(block.num_dst)
        return pos, neg

    def forward_pair_stacked(
        self, x: Features, block: Block, perm: Tensor, layout: PairLayout
    ) -> Tensor:
        if not self._stacks_views(x, block):
            return super().forward_pair_stacked(x, block, perm, layout)
        both = block.adjacency("gcn_self").stack_remapped(perm)
        if not layout.is_identity:
            # The stacked adjacency's rows put in the layout's order: nothing dense is permuted.
            both = both.rows(layout.order(block.num_dst))
        return self._pair_product(x, both)

    def _stacks_views(self, x: Features, block: Block) -> bool:
        """Whether both views go through one product with ``[A; A P]``. Dense inputs: as in
        propagate_permuted, only while A is much sparser than the transform is wide. Sparse
        inputs always: the chained product never builds the transform at all."""
        if "residual" in self.parts:
            return False
        edge_heavy = (
            block.adjacency("gcn_self").nnz * REMAP_COST > x.shape[0] * self.weight.shape[1]
        )
        return isinstance(x, SparseMatrix) or not edge_heavy

    def _pair_product(self, x: Features, both: SparseMatrix) -> Tensor:
        """``both @ (x W) + b`` for ``both`` = ``[A; A P]`` (its rows in any order): both views
        in one product, forward and backward (see SparseMatrix.stack_remapped); for sparse x
        one column block at a time (see forward)."""
        if isinstance(x, SparseMatrix):
            return chain_matmul([both, x], self.weight).add_(self.bias)
        return both.matmul(self.transform(x)).add_(self.bias)


class SAGEConv(TransformPropagateConv):
    """``mean_j(x_j) W_l + b + x_i W_r`` (PyG's ``SAGEConv`` with mean aggregation)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, {"lin": out_channels, "root": out_channels})
        self.out_channels = out_channels
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn.Linear's default initialisation, as PyG's SAGEConv uses.
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def propagate(self, t: Tensor, block: Block) -> Tensor:
        neighbours = block.adjacency("mean").matmul(self.part(t, "lin"))
        return neighbours.add_(self.bias).add_(self.part(t, "root")[block.dst_rows])


class GINConv(TransformPropagateConv):
    """``MLP(x_i + sum_j x_j)`` with ``MLP = Linear, act, Linear`` (PyG's ``GINConv``, eps 0).

    The MLP's first linear layer is the transform: ``(x_i + sum_j x_j) W1 = x_i W1 +
    sum_j x_j W1``.
    """

    def __init__(self, in_channels: int, out_channels: int, act: nn.Module, residual: bool = False):
        parts = {"lin": out_channels} | ({"residual": out_channels} if residual else {})
        super().__init__(in_channels, parts)
        self.out_channels = out_channels
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.act = act
        self.lin2 = nn.Linear(out_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.weight_part("lin").data, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        if "residual" in self.parts:
            _glorot_(self.weight_part("residual").data)
        self.lin2.reset_parameters()

    def propagate(self, t: Tensor, block: Block) -> Tensor:
        h = self.part(t, "lin")
        summed = block.adjacency("sum").matmul(h).add_(h[block.dst_rows]).add_(self.bias)
        return _plus_residual(self.lin2(self.act(summed)), self._residual(t, block))


class GATConv(TransformPropagateConv):
    """Graph attention (PyG's ``GATConv``): ``heads`` attention heads over in-edges and a
    self-loop, concatenated (``concat``) or averaged.

    Args:
        out_channels: width of each head.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        residual: bool = False,
        negative_slope: float = 0.2,
    ):
        total = heads * out_channels if concat else out_channels
        parts = {"lin": heads * out_channels} | ({"residual": total} if residual else {})
        super().__init__(in_channels, parts)
        self.heads, self.head_channels, self.concat = heads, out_channels, concat
        self.out_channels = total
        self.negative_slope = negative_slope
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
        self.bias = nn.Parameter(torch.zeros(total))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name in self.parts:
            _glorot_(self.weight_part(name).data)
        _glorot_(self.att_src.data)
        _glorot_(self.att_dst.data)
        nn.init.zeros_(self.bias)

    def propagate(self, t: Tensor, block: Block) -> Tensor:
        h = self.part(t, "lin")
        # Every node's source and target logits of every head as one [nodes, 2 * heads]
        # product with the attention vectors laid out block-diagonally (a broadcast product,
        # whose backward reduces over the nodes, costs many times more).
        att = torch.cat([torch.block_diag(*self.att_src[0]), torch.block_diag(*self.att_dst[0])])
        logits = h @ att.T
        alpha_src, alpha_dst = logits[:, : self.heads], logits[block.dst_rows, self.heads :]
        edges = attention_edges(block, self.heads)
        score = alpha_src.index_select(0, edges.src) + alpha_dst.index_select(0, edges.dst)
        score = F.leaky_relu(score, self.negative_slope)
        out = _attention_sum(h, score, edges, self.head_channels, self.concat)
        return out + self.bias + self._residual(t, block)


class GATv2Conv(TransformPropagateConv):
    """GATv2 (Brody et al., ICLR 2022, https://arxiv.org/abs/2105.14491; PyG's ``GATv2Conv``
    with separate source and target weights): the attention of edge ``j -> i`` is
    ``a . LeakyReLU(W_s x_j + W_t x_i)``, so the ranking of neighbours depends on the target
    (GAT's is the same for every target). Heads are concatenated (``concat``) or averaged.

    Args:
        out_channels: width of each head.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        residual: bool = False,
        negative_slope: float = 0.2,
    ):
        total = heads * out_channels if concat else out_channels
        parts = {"lin": heads * out_channels, "dst": heads * out_channels}
        parts |= {"residual": total} if residual else {}
        super().__init__(in_channels, parts)
        self.heads, self.head_channels, self.concat = heads, out_channels, concat
        self.out_channels = total
        self.negative_slope = negative_slope
        self.att = nn.Parameter(torch.empty(1, heads, out_channels))
        self.bias_src = nn.Parameter(torch.zeros(heads * out_channels))
        self.bias_dst = nn.Parameter(torch.zeros(heads * out_channels))
        self.bias = nn.Parameter(torch.zeros(total))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name in self.parts:
            _glorot_(self.weight_part(name).data)
        _glorot_(self.att.data)
        for bias in (self.bias_src, self.bias_dst, self.bias):
            nn.init.zeros_(bias)

    def propagate(self, t: Tensor, block: Block) -> Tensor:
        h_src = self.part(t, "lin") + self.bias_src
        h_dst = self.part(t, "dst")[block.dst_rows] + self.bias_dst
        edges = attention_edges(block, self.heads)
        pair = h_src.index_select(0, edges.src) + h_dst.index_select(0, edges.dst)
        pair = F.leaky_relu(pair, self.negative_slope)
        # a . pair per head as one product with the block-diagonal attention vectors.
        score = pair @ torch.block_diag(*self.att[0]).T
        out = _attention_sum(h_src, score, edges, self.head_channels, self.concat)
        return out + self.bias + self._residual(t, block)


class AttentionEdges:
    """A block's attention edges (one self-loop per destination, as GATConv) sorted by
    destination, then source, and the layouts of the per-head sums over them.

    Head ``k`` of node ``i`` is row ``i * heads + k`` of ``[nodes, heads * C]`` features viewed
    as ``[nodes * heads, C]``. Each (destination, head) is one bag of entries (its edges in
    order), so the weighted sums of every head are one sum-bag product (``embedding_bag``),
    the attention gradient one sampled product over the same pattern (``sampled_addmm``),
    and the sums' backward one sum-bag product over the bags by source. Built once per block
    and number of heads (:func:`attention_edges`).

    Attributes:
        src, dst: ``[E]`` the sorted edges.
        bag: ``[E * heads]`` the bag (``dst * heads + k``) of every entry, in entry order.
        pattern: ``[num_dst * heads, num_src * heads]`` CSR pattern of the entries.
        edge_of: ``[E * heads]`` the position in ``[E, heads].view(-1)`` of every entry;
            ``of_edge`` its inverse.
        by_src: ``(offsets, rows, entries)`` of the bags by source: where each bag starts,
            the row (``dst * heads + k``) and the forward entry of each of its entries.
    """

    def __init__(self, src: Tensor, dst: Tensor, num_src: int, num_dst: int, heads: int):
        order = torch.argsort(dst * num_src + src)
        self.src, self.dst = src.index_select(0, order), dst.index_select(0, order)
        self.num_src, self.num_dst, self.heads = num_src, num_dst, heads
        offsets, rows, edge_of = _head_bags(self.dst, self.src, num_dst, heads)
        entries = rows.numel()
        self.pattern = torch.sparse_csr_tensor(
            torch.cat([offsets, offsets.new_tensor([entries])]), rows,
            torch.zeros(entries, device=src.device), (num_dst * heads, num_src * heads),
            check_invariants=False,
        )  # fmt: skip
        self.bag = self.dst[:, None] * heads + torch.arange(heads, device=src.device)
        self.bag = self.bag.reshape(-1).index_select(0, edge_of)
        self.edge_of = edge_of
        self.of_edge = torch.empty_like(edge_of)
        self.of_edge[edge_of] = torch.arange(entries, device=src.device)
        offsets_t, rows_t, edge_of_t = _head_bags(self.src, self.dst, num_src, heads)
        self.by_src = (offsets_t, rows_t, self.of_edge.index_select(0, edge_of_t))

    def sums(self, weights: Tensor, h: Tensor) -> Tensor:
        """``[num_dst * heads, C]``: each bag's entries' rows of ``h`` (``[num_src * heads,
        C]``) weighted by ``weights`` (``[E * heads]`` in entry order) and summed."""
        offsets = self.pattern.crow_indices()[:-1]
        return F.embedding_bag(self.pattern.col_indices(), h, offsets, mode="sum",
                               per_sample_weights=weights)  # fmt: skip

    def sums_by_source(self, weights: Tensor, g: Tensor) -> Tensor:
        """The transposed sums: ``[num_src * heads, C]`` from ``g`` (``[num_dst * heads, C]``)."""
        offsets, rows, entries = self.by_src
        return F.embedding_bag(rows, g, offsets, mode="sum",
                               per_sample_weights=weights.index_select(0, entries))  # fmt: skip

    def entry_dots(self, g: Tensor, h: Tensor) -> Tensor:
        """``[E * heads]``: ``g[bag] . h[row]`` of every entry (``g`` ``[num_dst * heads, C]``,
        ``h`` ``[num_src * heads, C]``), without gathering either per entry."""
        dtype = g.dtype if g.dtype in (torch.float32, torch.float64) else torch.float32
        pattern = self.pattern if self.pattern.dtype == dtype else self.pattern.to(dtype)
        dots = torch.sparse.sampled_addmm(pattern, g.to(dtype), h.to(dtype).T, beta=0.0)
        return dots.values().to(g.dtype)  # (sampled_addmm wants single or double precision)

    def bag_sum(self, values: Tensor) -> Tensor:
        """``[num_dst * heads]``: the sum of each bag's entries."""
        return values.new_zeros(self.num_dst * self.heads).index_add_(0, self.bag, values)


def attention_edges(block: Block, heads: int) -> AttentionEdges:
    """The block's :class:`AttentionEdges` for ``heads`` heads, cached with its adjacencies."""
    key = f"attention_edges:{heads}"
    if key not in block._cache:
        src, dst = block.attention_edges()
        block._cache[key] = AttentionEdges(src, dst, block.num_src, block.num_dst, heads)
    return block._cache[key]


def _head_bags(key: Tensor, other: Tensor, num_keys: int, heads: int) -> tuple[Tensor, ...]:
    """``(offsets, rows, edge_of)`` of the bags ``(key, k)`` (bag ``key * heads + k`` holds
    the edges of ``key`` in order): where each bag starts, the row ``other * heads + k`` each
    entry reads, and the position of each entry's ``(edge, k)`` in ``[E, heads].view(-1)``."""
    order = torch.argsort(key, stable=True)
    count = torch.bincount(key, minlength=num_keys)
    start = torch.zeros(num_keys + 1, dtype=torch.long, device=key.device)
    torch.cumsum(count, 0, out=start[1:])
    sorted_key = key.index_select(0, order)
    first = start.index_select(0, sorted_key)
    rank = torch.arange(key.numel(), device=key.device) - first
    head = torch.arange(heads, device=key.device)
    # Bag (key, k) holds key's edges in order, from start[key] * heads + k * count[key].
    entry = (first * heads + rank)[:, None] + head * count.index_select(0, sorted_key)[:, None]
    entry = entry.reshape(-1)
    rows = torch.empty_like(entry)
    rows[entry] = (other.index_select(0, order)[:, None] * heads + head).reshape(-1)
    edge_of = torch.empty_like(entry)
    edge_of[entry] = (order[:, None] * heads + head).reshape(-1)
    offsets = (start[:-1, None] * heads + head * count[:, None]).reshape(-1)
    return offsets, rows, edge_of


def _attention_sum(
    h_src: Tensor, score: Tensor, edges: AttentionEdges, channels: int, concat: bool
) -> Tensor:
    """``sum_j softmax_j(score_ij) h_j`` per destination and head (``[E, heads]`` scores of
    ``edges`` over ``[num_src, heads * channels]`` sources), heads concatenated or averaged."""
    out = _AttentionSum.apply(score, h_src.contiguous(), edges, channels)
    return out if concat else out.view(edges.num_dst, edges.heads, channels).mean(dim=1)


class _AttentionSum(torch.autograd.Function):
    """The softmax over each destination's edges and the weighted sum. Its backward is two
    sparse products over the same entries (autograd's would gather ``[E, heads, channels]``
    messages and scatter their gradient back)."""

    @staticmethod
    def forward(ctx, score: Tensor, h: Tensor, edges: AttentionEdges, channels: int) -> Tensor:
        bag = edges.bag
        # The softmax in at least single precision (autocast may hand over half precision).
        dtype = torch.promote_types(score.dtype, torch.float32)
        logits = score.reshape(-1).index_select(0, edges.edge_of).to(dtype)
        # The maximum only shifts the exponent (softmax is shift-invariant): no gradient.
        peak = logits.new_full((edges.num_dst * edges.heads,), float("-inf"))
        peak.scatter_reduce_(0, bag, logits, "amax")
        alpha = logits.sub_(peak.index_select(0, bag)).exp_()
        alpha.div_(edges.bag_sum(alpha).index_select(0, bag))
        out = edges.sums(alpha.to(h.dtype), h.view(-1, channels))
        ctx.save_for_backward(alpha, h)
        ctx.edges, ctx.channels, ctx.score_dtype = edges, channels, score.dtype
        return out.view(edges.num_dst, -1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        alpha, h = ctx.saved_tensors
        edges, channels = ctx.edges, ctx.channels
        grad = grad.contiguous().view(-1, channels)
        grad_score = grad_h = None
        if ctx.needs_input_grad[1]:
            grad_h = edges.sums_by_source(alpha.to(grad.dtype), grad).view(edges.num_src, -1)
        if ctx.needs_input_grad[0]:
            # d out / d alpha of an entry is its source's row, then the softmax's backward.
            dots = edges.entry_dots(grad, h.view(-1, channels))
            weighted = dots.to(alpha.dtype).mul_(alpha)
            per_bag = edges.bag_sum(weighted).index_select(0, edges.bag)
            entries = weighted.sub_(alpha * per_bag)
            grad_score = entries.index_select(0, edges.of_edge).view(-1, edges.heads)
            grad_score = grad_score.to(ctx.score_dtype)
        return grad_score, grad_h, None, None


def permute_rows(t: Tensor, perm: Tensor) -> Tensor:
    """``t[perm]`` for a permutation ``perm``, whose backward gathers by the inverse
    permutation instead of autograd's scatter-add (which sorts the indices)."""
    return _PermuteRows.apply(t, perm)


class _PermuteRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor, perm: Tensor) -> Tensor:
        ctx.save_for_backward(perm)
        return t.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (perm,) = ctx.saved_tensors
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        return grad.index_select(0, inverse), None
