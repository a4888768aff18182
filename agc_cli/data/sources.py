"""One entry point for every graph source: catalog names, synthetic specs and user files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from agc_cli.data import catalog, synthetic
from agc_cli.data.cache import load_cached_graph, save_graph
from agc_cli.data.files import is_user_graph, load_user_graph
from agc_cli.data.graph import Graph
from agc_cli.data.real import load_real, missing_raw_files
from agc_cli.errors import UsageError


@dataclass(frozen=True)
class GraphInfo:
    """Sizes known before loading (catalog metadata, synthetic spec) or read off a graph."""

    name: str
    source: str  # "catalog" | "synthetic" | "file"
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
    """What is known about ``dataset`` without loading it."""
    entry = catalog.lookup(dataset)
    if entry is not None:
        return GraphInfo(
            entry.name, "catalog", entry.nodes, entry.edges, entry.features, entry.classes,
            0.02 if entry.bag_of_words else 1.0,
            available=not missing_raw_files(entry, root), labeled_nodes=entry.labeled_nodes,
        )  # fmt: skip
    spec = synthetic.parse_synthetic(dataset)
    if spec is not None:
        d = synthetic.describe(spec)
        return GraphInfo(dataset, "synthetic", d["nodes"], d["edges"], d["features"], d["classes"])
    path = Path(dataset).expanduser()
    if is_user_graph(path):
        return info_of(load_user_graph(path), "file")
    raise _unknown_dataset(dataset)


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


def load_graph(dataset: str, root: Path, cache_dir: Path, labeled_only: bool = False) -> Graph:
    """Load ``dataset``: a catalog name, a synthetic preset/spec, or a path to user files.

    Catalog and synthetic graphs are cached under ``cache_dir`` (None: no cache), so the second
    load is a file read; ``root`` is only ever read unless raw files must be downloaded.
    """
    cache_dir = Path(cache_dir)
    entry = catalog.lookup(dataset)
    spec = synthetic.parse_synthetic(dataset) if entry is None else None
    if entry is None and spec is None:
        path = Path(dataset).expanduser()
        if is_user_graph(path):
            return load_user_graph(path)
        raise _unknown_dataset(dataset)
    identity = entry.name if entry else f"{spec.name}:{synthetic.spec_key(spec)}"
    key = _cache_key(identity, labeled_only)
    cache_file = cache_dir / "graphs" / f"{key}.pt"
    cached = load_cached_graph(cache_file)
    if cached is not None:
        return cached
    if entry is not None:
        graph = load_real(entry, Path(root), cache_dir, labeled_only)
    else:
        graph = synthetic.generate(spec)
    save_graph(graph, cache_file)
    return graph


def _unknown_dataset(dataset: str) -> UsageError:
    names = ", ".join(e.name for e in catalog.CATALOG.values())
    presets = ", ".join(synthetic.PRESETS)
    return UsageError(
        f"unknown dataset {dataset!r}: use a catalog name ({names}), a synthetic preset "
        f"({presets}, or sbm:nodes=...,clusters=...) or a path to a .npz/.csv/directory"
    )


def _cache_key(identity: str, labeled_only: bool) -> str:
    digest = hashlib.sha1(identity.encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", identity.split(":")[0])
    return f"{stem}-{digest}{'-labeled' if labeled_only else ''}"
