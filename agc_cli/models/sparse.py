"""Sparse CSR matrices for message passing and bag-of-words features.

Both the first linear transform of bag-of-words features (``X @ W``) and the propagation over a
normalised adjacency (``A @ H``) are sparse-dense products. torch's own CSR backward for the
dense operand is slow on CPU (about 20x the forward on Cora's features); :class:`SparseMatrix`
keeps the transposed structure, built once on first use, so the backward is one more product.
On CPU the products run as weighted ``embedding_bag`` sums, about twice as fast as
``torch.sparse.mm``; on other devices they use ``torch.sparse.mm``.
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
        col: int64 ``[nnz]`` column of every entry, sorted within each row.
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

    @classmethod
    def from_edges(
        cls, row: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]
    ) -> SparseMatrix:
        """Matrix with ``values[e]`` at ``(row[e], col[e])``; entries are sorted into CSR order."""
        crow, order = _csr_order(row, col, shape)
        return cls(crow, col[order], values[order], shape)

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
        """``(crow, col, values)`` of ``Aᵀ`` (its structure is computed once and shared)."""
        if not self._transpose:
            # Entries are in row-major order, so a stable sort by column alone yields the
            # transpose's row-major order (cheaper than sorting a combined key).
            col = self.col.int() if self.shape[1] < 2**31 else self.col  # int32 sorts faster
            order = torch.sort(col, stable=True).indices
            crow_t = torch.zeros(self.shape[1] + 1, dtype=torch.long, device=self.col.device)
            torch.cumsum(torch.bincount(self.col, minlength=self.shape[1]), 0, out=crow_t[1:])
            row = _row_of_entries(self.crow)
            self._transpose.update(crow=crow_t, col=row[order], order=order)
        t = self._transpose
        return t["crow"], t["col"], self.values[t["order"]]

    def with_values(self, values: Tensor) -> SparseMatrix:
        """Same sparsity pattern, new non-zero values."""
        return SparseMatrix(self.crow, self.col, values, self.shape, self._transpose)

    def remap_columns(self, mapping: Tensor) -> SparseMatrix:
        """The matrix ``B`` with ``B[i, mapping[j]] = A[i, j]`` (``mapping`` a permutation).

        ``B @ t == A @ t[mapping]``: a product with row-permuted dense rows, without permuting
        them.
        """
        return SparseMatrix.from_edges(
            _row_of_entries(self.crow), mapping[self.col], self.values, self.shape
        )

    def matmul(self, dense: Tensor) -> Tensor:
        """``self @ dense`` with gradients to ``dense``."""
        return _SparseDenseMatmul.apply(dense, self)

    def rows(self, index: Tensor) -> SparseMatrix:
        """The rows ``index`` (in that order) as a new sparse matrix, without a Python loop."""
        index = index.to(self.crow.device).long()
        starts = self.crow[index]
        counts = self.crow[index + 1] - starts
        crow = torch.zeros(index.numel() + 1, dtype=torch.long, device=self.crow.device)
        torch.cumsum(counts, 0, out=crow[1:])
        out_row = torch.repeat_interleave(
            torch.arange(index.numel(), device=self.crow.device), counts
        )
        # Each gathered entry sits at its source row's start plus its rank within the row.
        pos = starts[out_row] + torch.arange(out_row.numel(), device=self.crow.device)
        pos -= crow[:-1][out_row]
        return SparseMatrix(crow, self.col[pos], self.values[pos], (index.numel(), self.shape[1]))

    def to(self, device: torch.device | str) -> SparseMatrix:
        return SparseMatrix(
            self.crow.to(device), self.col.to(device), self.values.to(device), self.shape
        )

    def to_dense(self) -> Tensor:
        return self.csr().to_dense()


class _SparseDenseMatmul(torch.autograd.Function):
    """``A @ B`` for a sparse ``A`` without gradient; the backward is ``Aᵀ @ grad``."""

    @staticmethod
    def forward(ctx, dense: Tensor, matrix: SparseMatrix) -> Tensor:
        ctx.matrix = matrix
        return _spmm(matrix.crow, matrix.col, matrix.values, dense)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        crow, col, values = ctx.matrix.transpose()
        return _spmm(crow, col, values, grad), None


def _spmm(crow: Tensor, col: Tensor, values: Tensor, dense: Tensor) -> Tensor:
    """CSR times dense."""
    if dense.device.type == "cpu":
        # One weighted sum-bag per row is exactly a CSR row times the dense matrix. The
        # gathers of dense rows are memory-bound: a dense operand of more than a few MB is
        # processed in column blocks that stay in cache (1.5x faster on Physics' features).
        weights = values.to(dense.dtype)
        offsets = crow[:-1]
        rows, width = dense.shape
        block = _column_block(rows * dense.element_size(), width)
        # Blocking copies the operand and the output once more; worth it only when every row
        # of them is gathered or written many times over.
        if block >= width or col.numel() < MIN_REUSE * (rows + offsets.numel()):
            return F.embedding_bag(col, dense, offsets, mode="sum", per_sample_weights=weights)
        out = torch.empty(offsets.numel(), width, dtype=dense.dtype)
        for start in range(0, width, block):
            part = dense[:, start : start + block].contiguous()
            out[:, start : start + block] = F.embedding_bag(
                col, part, offsets, mode="sum", per_sample_weights=weights
            )
        return out
    csr = torch.sparse_csr_tensor(crow, col, values, size=(crow.numel() - 1, dense.shape[0]))
    return torch.sparse.mm(csr, dense)


# Bytes of the dense operand's column block gathered by one pass of the CPU product, and the
# non-zeros per operand-plus-output row below which blocking does not repay its copies.
BLOCK_BYTES = 4 << 20
MIN_REUSE = 8


def _column_block(column_bytes: int, width: int) -> int:
    """Columns per block: as many as fit in :data:`BLOCK_BYTES`, in multiples of 64."""
    fit = BLOCK_BYTES // max(column_bytes, 1)
    return width if fit >= width else max(64, fit // 64 * 64)


def _csr_order(row: Tensor, col: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Row pointers and the permutation that sorts entries by ``(row, col)``."""
    order = torch.argsort(row * shape[1] + col)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=row.device)
    torch.cumsum(torch.bincount(row, minlength=shape[0]), 0, out=crow[1:])
    return crow, order


def _row_of_entries(crow: Tensor) -> Tensor:
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)
