"""What is known about a graph source before loading it: sizes, and whether its files exist.

This module imports neither torch nor numpy, so ``agc stats NAME`` on catalog metadata starts
instantly; the loaders it needs for other sources (stores, synthetic specs, user files) are
imported only on the branch that reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agc_cli.data import catalog
from agc_cli.data.layout import is_store, missing_raw_files
from agc_cli.errors import UsageError

if TYPE_CHECKING:
    from agc_cli.data.graph import Graph


@dataclass(frozen=True)
class GraphInfo:
    """Sizes known before loading (catalog metadata, synthetic spec) or read off a graph."""

    name: str
    source: str  # "catalog" | "synthetic" | "file" | "store"
    nodes: int
    edges: int
    features: int
    classes: int | None
    feature_density: float = 1.0  # fraction of non-zero features (bag-of-words < 0.05)
    available: bool = True  # data is on disk / generated without a download
    labeled_nodes: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def describe_source(dataset: str, root: Path) -> GraphInfo:
    """What is known about ``dataset`` without loading it (a store: its ``meta.json``)."""
    if is_store(dataset):
        from agc_cli.data import store

        meta = store.read_meta(dataset)
        # Named by its path, so a recommendation's `dataset` points at the store.
        return GraphInfo(
            dataset, "store", meta["nodes"], meta["edges"], meta["features"],
            meta["classes"], meta["feature_density"], labeled_nodes=meta["labeled_nodes"],
        )  # fmt: skip
    entry = catalog.lookup(dataset)
    if entry is not None:
        return GraphInfo(
            entry.name, "catalog", entry.nodes, entry.edges, entry.features, entry.classes,
            entry.feature_density or (0.02 if entry.bag_of_words else 1.0),
            available=not missing_raw_files(entry, root), labeled_nodes=entry.labeled_nodes,
        )  # fmt: skip
    from agc_cli.data import synthetic

    spec = synthetic.parse_synthetic(dataset)
    if spec is not None:
        d = synthetic.describe(spec)
        return GraphInfo(dataset, "synthetic", d["nodes"], d["edges"], d["features"], d["classes"])
    from agc_cli.data.files import is_user_graph, load_user_graph

    path = Path(dataset).expanduser()
    if is_user_graph(path):
        return info_of(load_user_graph(path), "file")
    raise unknown_dataset(dataset)


def info_of(graph: Graph, source: str) -> GraphInfo:
    """GraphInfo measured on a loaded graph."""
    density = 1.0
    if graph.sparse_features:
        density = graph.x.values().numel() / max(1, graph.num_nodes * graph.num_features)
    labeled = int((graph.y >= 0).sum()) if graph.y is not None else None
    return GraphInfo(
        graph.name, source, graph.num_nodes, graph.num_edges, graph.num_features,
        graph.num_classes, density, True, labeled,
    )  # fmt: skip


def unknown_dataset(dataset: str) -> UsageError:
    from agc_cli.data import synthetic

    names = ", ".join(e.name for e in catalog.CATALOG.values())
    presets = ", ".join(synthetic.PRESETS)
    return UsageError(
        f"unknown dataset {dataset!r}: use a catalog name ({names}), a synthetic preset "
        f"({presets}, or sbm:nodes=...,clusters=...), a path to a .npz/.csv/directory or "
        "a store directory written by `agc convert`"
    )
