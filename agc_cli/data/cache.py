"""Processed-graph cache: one file per graph, written atomically, loaded without pickle code."""

from __future__ import annotations

from pathlib import Path

import torch

from agc_cli.data.graph import Graph
from agc_cli.utils.io import atomic_torch_save

CACHE_VERSION = 1


def save_graph(graph: Graph, path: Path) -> None:
    """Write ``graph`` to ``path`` atomically (temporary file + rename)."""
    state: dict[str, object] = {
        "version": CACHE_VERSION,
        "name": graph.name,
        "colptr": graph.colptr,
        "row": graph.row,
        "num_classes": graph.num_classes,
        "splits": graph.splits,
    }
    if graph.sparse_features:
        state["x_crow"] = graph.x.crow_indices()
        state["x_col"] = graph.x.col_indices()
        state["x_values"] = graph.x.values()
        state["x_shape"] = list(graph.x.shape)
    else:
        state["x"] = graph.x
    if graph.y is not None:
        state["y"] = graph.y
    atomic_torch_save(state, path)


def load_cached_graph(path: Path) -> Graph | None:
    """The cached graph at ``path``, or None when absent, unreadable or of an old version."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True, mmap=True)
    except Exception:  # a truncated or foreign file is simply rebuilt
        return None
    if state.get("version") != CACHE_VERSION:
        return None
    if "x" in state:
        x = state["x"]
    else:
        x = torch.sparse_csr_tensor(
            state["x_crow"], state["x_col"], state["x_values"],
            size=tuple(state["x_shape"]), check_invariants=False,
        )  # fmt: skip
    return Graph(
        name=state["name"],
        colptr=state["colptr"],
        row=state["row"],
        x=x,
        y=state.get("y"),
        splits=state.get("splits") or {},
        num_classes=state.get("num_classes"),
    )
