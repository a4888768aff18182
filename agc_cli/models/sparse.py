"""Sparse CSR matrices for message passing and bag-of-words features.

Both the first linear transform of bag-of-words features (``X @ W``) and the propagation over a
normalised adjacency (``A @ H``) are sparse-dense products. torch's own CSR backward for the
dense operand is slow on CPU (about 20x the forward on Cora's features); :class:`SparseMatrix`
keeps the transposed structure, built once on first use, so the backward is one more product.
On CPU the products run as weighted ``embedding_bag`` sums, about twice as fast as
``torch.sparse.mm``; on other devices they use ``torch.sparse.mm``.

:func:`chain_matmul` multiplies a chain such as ``A @ (X @ W)`` (a GCN layer on bag-of-words
features) one column block at a time, so neither the ``[nodes, width]`` transform nor its
gradient is ever materialised whole: each block's intermediate stays in cache between the two
products, forward and backward.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


class SparseMatrix:
    """A CSR matrix whose products with dense matrices carry gradients to the dense operand.

    Copies made with :meth:`with_values` share the (lazily built) transposed structure, so
    dropout on the non-zeros or a new normalisation costs no re-sorting.

    Args:
        crow: int64 ``[rows + 1]`` row pointers.
        col: int64 ``[nnz]`` column of every entry, grouped by row. Within a row the columns
            are sorted or, for matrices built by :meth:`remap_columns` and
            :meth:`stack_remapped` on the CPU, in any order (the CPU products sum a row's
            entries in any order; other devices get sorted rows).
        values: float ``[nnz]``; never trained (gradients only reach the dense operand).
        shape: ``(rows, cols)``.
    """

    def __init__(
        self,
        crow: Tensor,
        col: Tensor,
        values: Tensor,
        shape: tuple[int, int],
        _transpose: dict[str, Tensor] | None = None,
    ):
        self.crow = crow
        self.col = col
        self.values = values
        self.shape = (int(shape[0]), int(shape[1]))
        # Shared between copies with other values: crow/col of the transpose and, for each of
        # its entries, the position of the same entry in ``values``.
        self._transpose = {} if _transpose is None else _transpose
        self._values_t: Tensor | None = None  # values in the transpose's order (these values)

    @classmethod
    def from_edges(
        cls, row: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]
    ) -> SparseMatrix:
        """Matrix with ``values[e]`` at ``(row[e], col[e])``; entries are sorted into CSR order."""
        crow, order = _csr_order(row, col, shape)
        if order is None:  # already in CSR order
            return cls(crow, col, values, shape)
        return cls(crow, col.index_select(0, order), values.index_select(0, order), shape)

    @classmethod
    def from_csr(cls, csr: Tensor) -> SparseMatrix:
        """Wrap a torch sparse CSR tensor (e.g. ``Graph.x`` for bag-of-words features)."""
        shape = (int(csr.shape[0]), int(csr.shape[1]))
        return cls(csr.crow_indices().long(), csr.col_indices().long(), csr.values(), shape)

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.values.device

    def csr(self) -> Tensor:
        return torch.sparse_csr_tensor(
            self.crow, self.col, self.values, size=self.shape, check_invariants=False
        )

    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(crow, col, values)`` of ``Aᵀ`` (its structure is computed once and shared).

        Its indices are int32 where they fit (half the bytes to gather and to read in every
        product: about 20% off the weight-gradient product on Physics' features).
        """
        if not self._transpose:
            # Entries are grouped by row, so a stable sort by column alone groups the
            # transpose's rows, each in row order of A (sorted columns of Aᵀ).
            width = self.shape[1]
            order = torch.sort(_narrow_int(self.col, width), stable=True).indices
            dtype = _index_dtype(max(self.nnz, self.shape[0]))
            crow_t = torch.zeros(width + 1, dtype=dtype, device=self.col.device)
            crow_t[1:] = torch.cumsum(torch.bincount(self.col, minlength=width), 0)
            row = _row_of_entries(self.crow, self.nnz, dtype)
            self._transpose.update(crow=crow_t, col=row.index_select(0, order), order=order)
        t = self._transpose
        if self._values_t is None:
            self._values_t = self.values.index_select(0, t["order"])
        return t["crow"], t["col"], self._values_t

    def with_values(self, values: Tensor) -> SparseMatrix:
        """Same sparsity pattern, new non-zero values."""
        return SparseMatrix(self.crow, self.col, values, self.shape, self._transpose)

    def remap_columns(self, mapping: Tensor) -> SparseMatrix:
        """The matrix ``B`` with ``B[i, mapping[j]] = A[i, j]`` (``mapping`` a permutation of
        ``A``'s columns or of a longer range, which becomes ``B``'s column count).

        ``B @ t == A @ t[mapping]``: a product with row-permuted dense rows, without permuting
        them. On the CPU nothing is re-sorted (the products do not need sorted rows).
        """
        # The dense operand may have more rows than A has columns (``mapping`` permutes all).
        shape = (self.shape[0], int(mapping.numel()))
        col = mapping.index_select(0, self.col)
        if self.device.type == "cpu":
            return SparseMatrix(self.crow, col, self.values, shape)
        return SparseMatrix.from_edges(
            _row_of_entries(self.crow, self.nnz), col, self.values, shape
        )

    def stack_remapped(self, mapping: Tensor) -> SparseMatrix:
        """``[A; B]`` (``2 * rows`` rows) with ``B = A.remap_columns(mapping)``.

        One product ``[A; B] @ t`` computes ``A @ t`` and ``A @ t[mapping]`` (DGI's clean and
        corrupted propagation), and its backward is one product too: the two gradients are
        summed inside it rather than as two ``[sources, width]`` tensors.
        """
        other = self.remap_columns(mapping)
        crow = torch.cat([self.crow, other.crow[1:] + self.nnz])
        col = torch.cat([self.col, other.col])
        values = torch.cat([self.values, other.values])
        return SparseMatrix(crow, col, values, (2 * self.shape[0], other.shape[1]))

    def matmul(self, dense: Tensor) -> Tensor:
        """``self @ dense`` with gradients to ``dense``."""
        return _ChainMatmul.apply(dense, self)

    def rows(self, index: Tensor) -> SparseMatrix:
        """The rows ``index`` (in that order) as a new sparse matrix, without a Python loop."""
        index = index.to(self.crow.device).long()
        starts = self.crow.index_select(0, index)
        counts = self.crow.index_select(0, index + 1) - starts
        crow = torch.zeros(index.numel() + 1, dtype=torch.long, device=self.crow.device)
        torch.cumsum(counts, 0, out=crow[1:])
        total = int(crow[-1])
        # Each gathered entry sits at its source row's start plus its rank within the row.
        pos = torch.repeat_interleave(starts - crow[:-1], counts, output_size=total)
        pos += torch.arange(total, device=self.crow.device)
        col, values = self.col.index_select(0, pos), self.values.index_select(0, pos)
        return SparseMatrix(crow, col, values, (index.numel(), self.shape[1]))

    def to(self, device: torch.device | str) -> SparseMatrix:
        if torch.device(device) == self.device:
            return self
        return SparseMatrix(
            self.crow.to(device), self.col.to(device), self.values.to(device), self.shape
        )

    def to_dense(self) -> Tensor:
        return self.csr().to_dense()


def chain_matmul(matrices: list[SparseMatrix], dense: Tensor) -> Tensor:
    """``matrices[0] @ (matrices[1] @ (... @ dense))`` with gradients to ``dense``.

    On the CPU the chain runs one column block of ``dense`` at a time through every product
    (forward and backward), so the intermediate ``[rows, width]`` products, such as the
    transform ``X @ W`` of every sampled node in a GCN layer, and their gradients exist only
    one cache-sized block at a time.
    """
    for outer, inner in zip(matrices, matrices[1:], strict=False):
        if outer.shape[1] != inner.shape[0]:
            raise ValueError(f"chain_matmul: shapes {outer.shape} and {inner.shape} do not chain")
    return _ChainMatmul.apply(dense, *matrices)


class _ChainMatmul(torch.autograd.Function):
    """``M_0 @ ... @ M_k @ B`` for sparse ``M_i`` without gradient; the backward is
    ``M_kᵀ @ ... @ M_0ᵀ @ grad``."""

    @staticmethod
    def forward(ctx, dense: Tensor, *matrices: SparseMatrix) -> Tensor:
        ctx.matrices = matrices
        return _spmm_chain([(m.crow, m.col, m.values) for m in reversed(matrices)], dense)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        nones = (None,) * len(ctx.matrices)
        if not ctx.needs_input_grad[0]:
            return (None, *nones)
        return (_spmm_chain([m.transpose() for m in ctx.matrices], grad.contiguous()), *nones)


Csr = tuple[Tensor, Tensor, Tensor]  # (crow, col, values)


def _spmm_chain(chain: list[Csr], dense: Tensor) -> Tensor:
    """``chain[-1] @ (... @ (chain[0] @ dense))`` for CSR ``(crow, col, values)`` triples."""
    if dense.device.type != "cpu":
        for crow, col, values in chain:
            size = (crow.numel() - 1, dense.shape[0])
            dense = torch.sparse.mm(torch.sparse_csr_tensor(crow, col, values, size=size), dense)
        return dense
    # One weighted sum-bag per row is exactly a CSR row times the dense matrix. The gathers of
    # dense rows are memory-bound: operands of more than a few MB are processed in column
    # blocks that stay in cache (1.5x faster on Physics' features), each block passing through
    # the whole chain before the next.
    weights = [values.to(dense.dtype) for _, _, values in chain]
    width = dense.shape[1]
    rows = [dense.shape[0]] + [crow.numel() - 1 for crow, _, _ in chain]
    block = _column_block(max(rows) * dense.element_size(), width)
    # Blocking copies the operand and the output once more; worth it only when every row of
    # the operands and outputs is gathered or written many times over.
    nnz = sum(col.numel() for _, col, _ in chain)
    if block >= width or nnz < MIN_REUSE * (sum(rows) + sum(rows[1:-1])):
        for (crow, col, _), w in zip(chain, weights, strict=True):
            dense = _bag_sum(crow, col, w, dense)
        return dense
    # Every block reads the same indices again: narrowed to int32 once, they cost half.
    chain = [_narrow_indices(crow, col, dense.shape[0]) + (w,) for (crow, col, _), w in
             zip(chain, weights, strict=True)]  # fmt: skip
    out = torch.empty(rows[-1], width, dtype=dense.dtype)
    staging = dense.new_empty(rows[0] * block)  # one buffer for every block's operand
    for start in range(0, width, block):
        columns = dense[:, start : start + block]
        part = staging[: columns.numel()].view(columns.shape).copy_(columns)
        for crow, col, w in chain:
            part = _bag_sum(crow, col, w, part)
        out[:, start : start + block] = part
    return out


def _narrow_indices(crow: Tensor, col: Tensor, cols: int) -> tuple[Tensor, Tensor]:
    """``(crow, col)`` as int32 where they fit (``embedding_bag`` wants one dtype for both)."""
    dtype = _index_dtype(max(col.numel(), cols))
    return crow.to(dtype), col.to(dtype)


def _bag_sum(crow: Tensor, col: Tensor, weights: Tensor, dense: Tensor) -> Tensor:
    """``CSR @ dense`` on the CPU as one weighted sum-bag per row (empty rows give zeros)."""
    return F.embedding_bag(col, dense, crow[:-1], mode="sum", per_sample_weights=weights)


# Bytes of the dense operand's column block gathered by one pass of the CPU product, and the
# non-zeros per operand-plus-output row below which blocking does not repay its copies.
BLOCK_BYTES = 4 << 20
MIN_REUSE = 8


def _column_block(column_bytes: int, width: int) -> int:
    """Columns per block: as many as fit in :data:`BLOCK_BYTES`, in multiples of 64."""
    fit = BLOCK_BYTES // max(column_bytes, 1)
    return width if fit >= width else max(64, fit // 64 * 64)


def _csr_order(row: Tensor, col: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
    """Row pointers and the permutation that puts entries into CSR order: grouped by row
    (stable) on the CPU, whose sum-bag products need no sorted columns (``None``, no
    permutation, when ``row`` is already sorted, as in layer-wise inference: 13% of its time
    went to the full sort); by ``(row, col)`` elsewhere (cuSPARSE)."""
    order = None
    if row.device.type == "cpu":
        if row.numel() > 1 and not bool((row[1:] >= row[:-1]).all()):
            order = torch.sort(_narrow_int(row, shape[0]), stable=True).indices
    else:
        order = torch.argsort(row * shape[1] + col)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=row.device)
    torch.cumsum(torch.bincount(row, minlength=shape[0]), 0, out=crow[1:])
    return crow, order


def _narrow_int(index: Tensor, bound: int) -> Tensor:
    """``index`` (values below ``bound``) in the narrowest of int16, int32 and int64: torch's
    stable CPU sort of integers is a radix sort, and int16 keys take half the passes of int32
    ones (about 2x faster on 577K column ids)."""
    if bound <= 2**15:
        return index.short()
    return index.int() if bound <= 2**31 else index


def _index_dtype(bound: int) -> torch.dtype:
    """int32 for indices and offsets below ``bound`` where that fits, else int64."""
    return torch.int32 if bound < 2**31 else torch.int64


def _row_of_entries(crow: Tensor, nnz: int, dtype: torch.dtype = torch.long) -> Tensor:
    counts = crow[1:] - crow[:-1]
    rows = torch.arange(counts.numel(), dtype=dtype, device=crow.device)
    return torch.repeat_interleave(rows, counts, output_size=nnz)
