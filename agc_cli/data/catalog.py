"""The catalog of named real-world datasets, with static metadata for planning offline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogEntry:
    """A named dataset: how to load it and its size, known without downloading anything.

    Attributes:
        name: canonical display name (also the folder name under ``--root``).
        loader: the raw format, read by :mod:`agc_cli.data.real` without PyG's dataset
            classes: ``planetoid``, ``amazon``, ``coauthor``, ``wikics``, ``flickr``,
            ``reddit``, ``reddit2`` (the files PyG's classes of those names read) or ``ogb``
            (OGB's raw file layout).
        nodes, edges, features, classes: sizes; ``edges`` counts directed edges of the
            undirected graph agc builds (each undirected edge twice).
        raw_files: files expected in ``ROOT/<name>/raw`` (for ``ogb``: ``ROOT/<name>/``).
        url: where the raw files come from.
        bag_of_words: sparse bag-of-words features, row-normalised and kept sparse.
        pyg_name: the dataset's name in PyG or OGB (for Planetoid, its file prefix).
        approx_edges: True when ``edges`` is an estimate (not yet checked against the data).
        feature_density: the fraction of non-zero features, measured on the raw files (None:
            not measured; bag-of-words graphs are then assumed at 2%).
    """

    name: str
    loader: str
    nodes: int
    edges: int
    features: int
    classes: int
    raw_files: tuple[str, ...]
    url: str
    bag_of_words: bool = False
    pyg_name: str | None = None
    approx_edges: bool = False
    labeled_nodes: int | None = None
    feature_density: float | None = None


_PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
_NPZ_URL = "https://github.com/shchur/gnn-benchmark/raw/master/data/npz/"
_OGB_URL = "http://snap.stanford.edu/ogb/data/nodeproppred/"
_SAINT_FILES = ("adj_full.npz", "feats.npy", "class_map.json", "role.json")


def _planetoid(
    name: str, nodes: int, edges: int, features: int, classes: int, density: float | None = None
) -> CatalogEntry:
    files = tuple(
        f"ind.{name.lower()}.{s}"
        for s in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    )
    return CatalogEntry(
        name, "planetoid", nodes, edges, features, classes, files, _PLANETOID_URL, True, name,
        feature_density=density,
    )  # fmt: skip


CATALOG: dict[str, CatalogEntry] = {
    e.name.lower(): e
    for e in (
        _planetoid("Cora", 2708, 10556, 1433, 7, 0.0127),
        _planetoid("CiteSeer", 3327, 9104, 3703, 6, 0.0085),
        _planetoid("PubMed", 19717, 88648, 500, 3),
        CatalogEntry(
            "Photo", "amazon", 7650, 238162, 745, 8,
            ("amazon_electronics_photo.npz",), _NPZ_URL, True, "Photo", feature_density=0.347,
        ),
        CatalogEntry(
            "Computers", "amazon", 13752, 491722, 767, 10,
            ("amazon_electronics_computers.npz",), _NPZ_URL, True, "Computers",
        ),
        CatalogEntry(
            "CS", "coauthor", 18333, 163788, 6805, 15,
            ("ms_academic_cs.npz",), _NPZ_URL, True, "CS",
        ),
        CatalogEntry(
            "Physics", "coauthor", 34493, 495924, 8415, 5,
            ("ms_academic_phy.npz",), _NPZ_URL, True, "Physics", feature_density=0.0039,
        ),
        CatalogEntry(
            "WikiCS", "wikics", 11701, 431726, 300, 10,
            ("data.json",), "https://github.com/pmernyei/wiki-cs-dataset/raw/master/dataset",
            approx_edges=True,
        ),
        CatalogEntry(
            "Flickr", "flickr", 89250, 899756, 500, 7, _SAINT_FILES,
            "https://drive.google.com/ (GraphSAINT release; PyG's Flickr downloads it)",
        ),
        CatalogEntry(
            "ArXiv", "ogb", 169343, 2315598, 128, 40,
            ("raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz"),
            _OGB_URL + "arxiv.zip", pyg_name="ogbn-arxiv",
        ),
        CatalogEntry(
            "Reddit2", "reddit2", 232965, 23213838, 602, 41, _SAINT_FILES,
            "https://drive.google.com/ (GraphSAINT release; PyG's Reddit2 downloads it)",
        ),
        CatalogEntry(
            "Reddit", "reddit", 232965, 114615892, 602, 41,
            ("reddit_data.npz", "reddit_graph.npz"), "https://data.dgl.ai/dataset/reddit.zip",
        ),
        CatalogEntry(
            "Products", "ogb", 2449029, 123718280, 100, 47,
            ("raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz"),
            _OGB_URL + "products.zip", pyg_name="ogbn-products",
        ),
        CatalogEntry(
            "Papers100M", "ogb", 111059956, 3231371744, 128, 172,
            ("raw/data.npz", "raw/node-label.npz"),
            _OGB_URL + "papers100M-bin.zip", pyg_name="ogbn-papers100M",
            approx_edges=True, labeled_nodes=1546782,
        ),
    )
}  # fmt: skip

# Alternative spellings users type (OGB names, lower-case aliases).
ALIASES = {
    "ogbn-arxiv": "arxiv",
    "ogbn-products": "products",
    "ogbn-papers100m": "papers100m",
    "amazon-photo": "photo",
    "amazon-computers": "computers",
    "coauthor-cs": "cs",
    "coauthor-physics": "physics",
}


def lookup(name: str) -> CatalogEntry | None:
    """Case-insensitive catalog lookup (aliases included); None if not a catalog name."""
    key = name.strip().lower()
    return CATALOG.get(ALIASES.get(key, key))
