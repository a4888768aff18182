"""Feature masking of the two-view methods: whole columns or single entries."""

from __future__ import annotations

import pytest
import torch

from agc_cli.models.augment import mask_columns, mask_entries
from agc_cli.models.sparse import SparseMatrix


def bag_of_words(rows=400, cols=50, density=0.2, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, cols, generator=g)
    return x * (torch.rand(rows, cols, generator=g) < density)


@pytest.mark.parametrize("mask", [mask_columns, mask_entries])
def test_sparse_and_dense_features_get_the_same_view(mask):
    x = bag_of_words()
    dense = mask(x, 0.3, torch.Generator().manual_seed(7))
    sparse = mask(SparseMatrix.from_csr(x.to_sparse_csr()), 0.3, torch.Generator().manual_seed(7))
    torch.testing.assert_close(sparse.to_dense(), dense)


def test_entry_masking_drops_about_p_of_the_non_zeros_independently_per_node():
    x = bag_of_words(rows=2000, cols=40, density=0.5)
    out = mask_entries(x, 0.25, torch.Generator().manual_seed(1))
    kept = (out != 0).sum() / (x != 0).sum()
    assert abs(float(kept) - 0.75) < 0.02
    assert torch.equal(out[out != 0], x[out != 0])  # survivors keep their values, unscaled
    # Not whole columns: every column keeps some entries and loses some.
    lost = (x != 0) & (out == 0)
    assert bool((lost.any(0) & (out != 0).any(0)).all())


def test_column_masking_zeroes_whole_columns():
    x = bag_of_words(density=1.0)
    out = mask_columns(x, 0.5, torch.Generator().manual_seed(3))
    zero_cols = (out == 0).all(0)
    assert 0 < int(zero_cols.sum()) < x.shape[1]
    assert torch.equal(out[:, ~zero_cols], x[:, ~zero_cols])
