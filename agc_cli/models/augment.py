"""Graph augmentations shared by the two-view contrastive methods (CCA-SSG, NS4GC, GBT)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agc_cli.models import rng
from agc_cli.models.batch import Features, GraphBatch
from agc_cli.models.encoder import Encoder
from agc_cli.models.sparse import SparseMatrix


def mask_columns(x: Features, p: float, generator: torch.Generator | None) -> Features:
    """Zero a random fraction ``p`` of the feature columns (no rescaling).

    Sparse features stay sparse: the mask multiplies the stored values by their column's keep
    bit, so sparse and dense inputs give the same view.
    """
    values = x.values if isinstance(x, SparseMatrix) else x
    keep = (rng.uniform(x.shape[1], values.device, generator) >= p).to(values.dtype)
    if isinstance(x, SparseMatrix):
        return x.with_values(x.values * keep[x.col])
    return x * keep


def mask_entries(x: Features, p: float, generator: torch.Generator | None) -> Features:
    """Zero each feature entry with probability ``p`` (no rescaling), a mask per node.

    Zeros stay zero, so only the non-zeros are drawn, in row-major order: a sparse batch and
    its dense copy give the same view.
    """
    if isinstance(x, SparseMatrix):
        keep = rng.uniform(x.values.numel(), x.values.device, generator) >= p
        return x.with_values(x.values * keep.to(x.values.dtype))
    nonzero = x != 0
    keep = rng.uniform(int(nonzero.sum()), x.device, generator) >= p
    mask = torch.zeros_like(nonzero)
    mask[nonzero] = keep
    return x * mask.to(x.dtype)


MASKS = {"columns": mask_columns, "entries": mask_entries}


def augmented_view(
    encoder: Encoder,
    batch: GraphBatch,
    edge_drop: float,
    feature_mask: float,
    generator: torch.Generator | None,
    masking: str = "columns",
) -> Tensor:
    """Encoder output on ``batch`` with a fraction of edges dropped and of features masked
    (whole ``"columns"``, the CCA-SSG paper's, or single ``"entries"``, PyAGC's).

    The edges are drawn first, then the features, from the same generator.
    """
    view = batch.drop_edges(edge_drop, generator) if edge_drop > 0 else batch
    mask = MASKS[masking]
    x = mask(batch.x, feature_mask, generator) if feature_mask > 0 else batch.x
    return encoder(x, view)


def two_views(model: Any, batch: GraphBatch) -> tuple[Tensor, Tensor]:
    """``model.encoder``'s outputs on two augmented views of ``batch``, view 1 drawn first,
    with the model's ``edge_drop``, ``feature_mask`` (one rate per view), ``feature_masking``
    and ``generator``."""
    first, second = (
        augmented_view(model.encoder, batch, model.edge_drop[k], model.feature_mask[k],
                       model.generator, model.feature_masking)
        for k in (0, 1)
    )  # fmt: skip
    return first, second
