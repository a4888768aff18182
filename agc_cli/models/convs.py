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
from torch_geometric.utils import softmax

from agc_cli.models.batch import Block, Features
from agc_cli.models.sparse import SparseMatrix

# Cost of re-sorting one adjacency entry, in copied elements of a dense matrix (rough).
REMAP_COST = 8


def _glorot_(weight: Tensor) -> None:
    bound = math.sqrt(6.0 / (weight.shape[-2] + weight.shape[-1]))
    nn.init.uniform_(weight, -bound, bound)


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

    def part(self, t: Tensor, name: str) -> Tensor:
        if len(self.parts) == 1:  # the whole transform: no slice (its backward would copy)
            return t
        return t[:, self._slices[name]]

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

    def _residual(self, t: Tensor, block: Block) -> Tensor | int:
        return self.part(t, "residual")[: block.num_dst] if "residual" in self.parts else 0


class GCNConv(TransformPropagateConv):
    """``Â X W + b`` with ``Â = D^-1/2 (A + I) D^-1/2`` (PyG's ``GCNConv``)."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False):
        parts = {"lin": out_channels} | ({"residual": out_channels} if residual else {})
        super().__init__(in_channels, parts)
        self.out_channels = out_channels
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name in self.parts:
            _glorot_(self.weight_part(name).data)
        nn.init.zeros_(self.bias)

    def propagate(self, t: Tensor, block: Block) -> Tensor:
        # Self-loops stored in the adjacency: the whole step (and its backward) is one product.
        out = block.adjacency("gcn_self").matmul(self.part(t, "lin"))
        return out + self.bias + self._residual(t, block)

    def propagate_permuted(self, t: Tensor, block: Block, perm: Tensor) -> Tensor:
        adjacency = block.adjacency("gcn_self")
        # A (P t) with the permutation moved into A's columns saves a [sources, width] copy of
        # t and of its gradient, at the cost of re-sorting A's entries: worth it while A is
        # much sparser than t is wide (a sampled batch, a citation graph), not on edge-heavy
        # graphs.
        if "residual" in self.parts or adjacency.nnz * REMAP_COST > t.numel():
            return super().propagate_permuted(t, block, perm)
        return adjacency.remap_columns(perm).matmul(t) + self.bias


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
        return neighbours + self.bias + self.part(t, "root")[: block.num_dst]


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
        summed = block.adjacency("sum").matmul(h) + h[: block.num_dst]
        return self.lin2(self.act(summed + self.bias)) + self._residual(t, block)


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
        h = self.part(t, "lin").reshape(-1, self.heads, self.head_channels)
        alpha_src = (h * self.att_src).sum(-1)
        alpha_dst = (h[: block.num_dst] * self.att_dst).sum(-1)
        src, dst = block.attention_edges()
        score = F.leaky_relu(alpha_src[src] + alpha_dst[dst], self.negative_slope)
        out = _attention_sum(h, score, src, dst, block.num_dst, self.concat)
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
        shape = (-1, self.heads, self.head_channels)
        h_src = (self.part(t, "lin") + self.bias_src).reshape(shape)
        h_dst = (self.part(t, "dst")[: block.num_dst] + self.bias_dst).reshape(shape)
        src, dst = block.attention_edges()
        score = (F.leaky_relu(h_src[src] + h_dst[dst], self.negative_slope) * self.att).sum(-1)
        out = _attention_sum(h_src, score, src, dst, block.num_dst, self.concat)
        return out + self.bias + self._residual(t, block)


def _attention_sum(
    h_src: Tensor, score: Tensor, src: Tensor, dst: Tensor, num_dst: int, concat: bool
) -> Tensor:
    """``sum_j softmax_j(score_ij) h_j`` per destination and head (``[E, heads]`` scores over
    ``[num_src, heads, channels]`` sources), heads concatenated or averaged."""
    alpha = softmax(score, dst, num_nodes=num_dst)
    out = h_src.new_zeros(num_dst, *h_src.shape[1:])
    out = out.index_add(0, dst, h_src[src] * alpha.unsqueeze(-1))
    return out.reshape(num_dst, -1) if concat else out.mean(dim=1)


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
