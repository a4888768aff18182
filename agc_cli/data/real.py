"""Loading catalog datasets with PyG's dataset classes (or OGB's raw layout) into a Graph.

The data root may be read-only shared storage: when the raw files are already there, PyG is
pointed at a staging folder in the cache directory whose ``raw`` is a symlink to them, so
PyG's ``processed/`` output never lands in the root.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agc_cli.data.catalog import CatalogEntry
from agc_cli.data.graph import Graph, row_normalize, to_csc
from agc_cli.errors import DataError

# Below this fraction of non-zeros, sparse features beat dense ones in the first linear layer.
SPARSE_DENSITY = 0.1


@contextlib.contextmanager
def _quiet():
    with open(os.devnull, "w") as sink:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield


def raw_dir(entry: CatalogEntry, root: Path) -> Path:
    """Where ``entry``'s raw files are expected under ``root``."""
    return Path(root) / entry.name / ("" if entry.loader == "ogb" else "raw")


def missing_raw_files(entry: CatalogEntry, root: Path) -> list[Path]:
    base = raw_dir(entry, root)
    return [base / f for f in entry.raw_files if not (base / f).is_file()]


def load_real(entry: CatalogEntry, root: Path, cache_dir: Path, labeled_only: bool) -> Graph:
    """Load ``entry`` from ``root`` (downloading into it when raw files are missing)."""
    root = Path(root)
    if entry.loader == "ogb":
        graph = _load_ogb(entry, root)
    else:
        graph = _load_pyg(entry, root, Path(cache_dir))
    if labeled_only and graph.y is not None:
        graph = labeled_subgraph(graph)
    return graph


def _load_pyg(entry: CatalogEntry, root: Path, cache_dir: Path) -> Graph:
    from torch_geometric import datasets

    missing = missing_raw_files(entry, root)
    if missing:
        dataset_root = root  # download into the user's root, like PyG would
    else:
        # Stage: CACHE/pyg/<Name>/raw -> ROOT/<Name>/raw so PyG writes processed/ in the cache.
        dataset_root = cache_dir / "pyg"
        stage = dataset_root / entry.name
        stage.mkdir(parents=True, exist_ok=True)
        link = stage / "raw"
        if not link.exists():
            if link.is_symlink():
                link.unlink()
            os.symlink(raw_dir(entry, root).resolve(), link, target_is_directory=True)
    cls = {
        "planetoid": datasets.Planetoid,
        "amazon": datasets.Amazon,
        "coauthor": datasets.Coauthor,
        "wikics": datasets.WikiCS,
        "flickr": datasets.Flickr,
        "reddit": datasets.Reddit,
        "reddit2": datasets.Reddit2,
    }[entry.loader]
    try:
        with _quiet():  # PyG prints "Processing..." itself; progress is the CLI's business
            if entry.pyg_name is not None:
                dataset = cls(str(dataset_root), entry.pyg_name)
            elif entry.loader == "wikics":
                dataset = cls(str(dataset_root / entry.name), is_undirected=True)
            else:
                dataset = cls(str(dataset_root / entry.name))
    except Exception as exc:
        if missing:
            raise DataError(_missing_message(entry, root, missing, exc)) from exc
        raise DataError(f"{entry.name}: could not read the raw files: {exc}") from exc
    data = dataset[0]
    x = data.x.float()
    if entry.bag_of_words:
        x = row_normalize(x)
        if (x != 0).float().mean() < SPARSE_DENSITY:
            x = x.to_sparse_csr()
    y = data.y.long().view(-1) if data.y is not None else None
    splits = {
        name: mask.nonzero().view(-1)
        for name in ("train_mask", "val_mask", "test_mask")
        if (mask := getattr(data, name, None)) is not None and mask.dim() == 1
    }
    return Graph.from_edge_index(
        entry.name, data.edge_index, data.num_nodes, x, y,
        {k.removesuffix("_mask"): v for k, v in splits.items()}, entry.classes,
    )  # fmt: skip


def _missing_message(entry: CatalogEntry, root: Path, missing: list[Path], exc: Exception) -> str:
    names = ", ".join(p.name for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
    reason = " ".join(str(exc).split())[:120]
    return (
        f"{entry.name}: raw files missing in {raw_dir(entry, root)} ({names}) and the download "
        f"failed ({reason}); get them from {entry.url}"
    )


def _load_ogb(entry: CatalogEntry, root: Path) -> Graph:
    """Read OGB's node-property raw layout (``ROOT/<Name>/raw``, ``ROOT/<Name>/split``)."""
    missing = missing_raw_files(entry, root)
    if missing:
        _download_ogb(entry, root, missing)
    base = raw_dir(entry, root)
    if entry.name == "Papers100M":
        data = np.load(base / "raw" / "data.npz")
        edge_index = torch.from_numpy(data["edge_index"])
        x = torch.from_numpy(data["node_feat"]).float()
        num_nodes = int(data["num_nodes_list"][0])
        label = np.load(base / "raw" / "node-label.npz")["node_label"].reshape(-1)
    else:
        edge_index = torch.from_numpy(_read_csv(base / "raw" / "edge.csv.gz", np.int64).T)
        x = torch.from_numpy(_read_csv(base / "raw" / "node-feat.csv.gz", np.float32))
        num_nodes = x.shape[0]
        label = _read_csv(base / "raw" / "node-label.csv.gz", np.float64).reshape(-1)
    y = torch.from_numpy(np.where(np.isnan(label), -1, label).astype(np.int64))
    splits = {}
    split_root = base / "split"
    if split_root.is_dir():
        for sub in split_root.iterdir():
            for part in ("train", "valid", "test"):
                f = sub / f"{part}.csv.gz"
                if f.is_file():
                    splits[part] = torch.from_numpy(_read_csv(f, np.int64).reshape(-1))
    splits["labeled"] = (y >= 0).nonzero().view(-1)
    return Graph.from_edge_index(entry.name, edge_index, num_nodes, x, y, splits, entry.classes)


def _read_csv(path: Path, dtype: type) -> np.ndarray:
    try:
        import pandas as pd  # much faster than numpy for the large OGB files, when present

        return pd.read_csv(path, header=None, dtype=dtype).to_numpy()
    except ImportError:
        return np.loadtxt(path, delimiter=",", dtype=dtype, ndmin=2)


def _download_ogb(entry: CatalogEntry, root: Path, missing: list[Path]) -> None:
    from torch_geometric.data import download_url, extract_zip

    target = raw_dir(entry, root)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        path = download_url(entry.url, str(target.parent))
        extract_zip(path, str(target.parent))
        extracted = target.parent / Path(entry.url).stem.replace("-bin", "")
        if extracted.is_dir() and not target.exists():
            extracted.rename(target)
    except Exception as exc:
        raise DataError(_missing_message(entry, root, missing, exc)) from exc


def labeled_subgraph(graph: Graph) -> Graph:
    """The subgraph induced by the labeled nodes (``y >= 0``), relabelled to 0..n-1."""
    keep = (graph.y >= 0).nonzero().view(-1)
    return induced_subgraph(graph, keep)


def induced_subgraph(graph: Graph, nodes: Tensor) -> Graph:
    """The subgraph induced by ``nodes`` (sorted), with features, labels and splits mapped."""
    nodes = torch.sort(nodes.long()).values
    mapping = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    mapping[nodes] = torch.arange(nodes.numel())
    col = graph.col()
    row = graph.row.long()
    keep = (mapping[row] >= 0) & (mapping[col] >= 0)
    edge_index = torch.stack([mapping[row[keep]], mapping[col[keep]]])
    colptr, new_row = to_csc(edge_index, nodes.numel(), undirected=False)
    x = graph.feature_rows(nodes)
    if graph.sparse_features:
        x = x.to_sparse_csr()
    y = graph.y[nodes] if graph.y is not None else None
    splits = {}
    for name, idx in graph.splits.items():
        mapped = mapping[idx]
        splits[name] = mapped[mapped >= 0]
    return Graph(graph.name, colptr, new_row, x, y, splits, graph.num_classes)
