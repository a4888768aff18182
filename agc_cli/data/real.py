"""Loading catalog datasets from their raw files into a Graph, without running any code.

Every raw format is read by agc itself: Planetoid's pickles through a restricted unpickler
(:mod:`agc_cli.data.planetoid`), ``.npz``/``.npy`` files with ``allow_pickle=False``, JSON and
CSV with their parsers. No PyG dataset class is involved, so no ``processed/`` file is ever read
or written, and the data root (which may be shared, read-only storage) is only read, except
when raw files are missing and get downloaded into it. The graphs are the ones PyG's dataset
classes build from the same files (same nodes, edges, features, labels and splits).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from agc_cli.data.catalog import CatalogEntry
from agc_cli.data.graph import Graph, to_csc
from agc_cli.data.layout import missing_raw_files, raw_dir
from agc_cli.data.planetoid import read_planetoid
from agc_cli.data.safe_pickle import checked_csr
from agc_cli.errors import DataError

# Below this fraction of non-zeros, sparse features beat dense ones in the first linear layer.
SPARSE_DENSITY = 0.1
# Bag-of-words rows are summed in dense blocks of about this many bytes (see _features).
_BLOCK_BYTES = 64 << 20
_GOOGLE_URL = "https://drive.usercontent.google.com/download?id={}&confirm=t"


def source_files(entry: CatalogEntry, root: Path) -> list[Path]:
    """Every file a load of ``entry`` from ``root`` reads (the raw files, OGB's splits)."""
    base = raw_dir(entry, root)
    files = [base / f for f in entry.raw_files]
    if entry.loader == "ogb" and (base / "split").is_dir():
        files += sorted((base / "split").glob("*/*.csv.gz"))
    return files


def source_identity(entry: CatalogEntry, root: Path) -> str:
    """A string that changes whenever a file :func:`load_real` reads changes: each file's
    resolved path, size, inode and modification and change times (the change time cannot be
    set back, so a file rewritten in place still gets a new identity)."""
    parts = []
    for path in source_files(entry, root):
        try:
            resolved = path.resolve()
            st = resolved.stat()
        except OSError:
            parts.append(f"{path}:missing")
            continue
        parts.append(f"{resolved}:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    return "|".join(parts)


def fetch_raw(entry: CatalogEntry, root: Path) -> None:
    """Download ``entry``'s missing raw files into ``root`` (nothing when all are there).

    Raises:
        DataError: the download failed (offline, say): names the files and where to get them.
    """
    root = Path(root)
    missing = missing_raw_files(entry, root)
    if not missing:
        return
    try:
        if entry.loader == "ogb":
            _download_ogb(entry, root)
        elif entry.loader == "reddit":
            _download_zip(entry.url, raw_dir(entry, root), entry.raw_files)
        elif entry.loader in ("flickr", "reddit2"):
            from torch_geometric import datasets  # only for the Google Drive file ids

            cls = datasets.Flickr if entry.loader == "flickr" else datasets.Reddit2
            for path in missing:
                file_id = getattr(cls, f"{path.name.split('.')[0]}_id")
                _download(_GOOGLE_URL.format(file_id), path)
        else:
            for path in missing:
                _download(f"{entry.url.rstrip('/')}/{path.name}", path)
    except Exception as exc:
        raise DataError(_missing_message(entry, root, missing, exc)) from exc
    still = missing_raw_files(entry, root)
    if still:
        raise DataError(_missing_message(entry, root, still, "not in the download"))


def load_real(entry: CatalogEntry, root: Path, labeled_only: bool = False) -> Graph:
    """Load ``entry`` from ``root`` (downloading into it when raw files are missing)."""
    root = Path(root)
    fetch_raw(entry, root)
    base = raw_dir(entry, root)
    if entry.loader == "ogb":
        graph = _load_ogb(entry, base)
    else:
        parts = _READERS[entry.loader](entry, base)
        graph = _assemble(entry, parts)
    if labeled_only and graph.y is not None:
        graph = labeled_subgraph(graph)
    return graph


@dataclass
class _Parts:
    """What a raw reader returns: NumPy arrays, checked against each other by :func:`_assemble`.

    ``x`` is CSR for bag-of-words data; ``edge_index`` is ``[2, E]`` int64 (either direction);
    ``splits`` maps names to node ids; ``where`` names the files for error messages.
    """

    x: np.ndarray | sp.csr_matrix
    edge_index: np.ndarray
    y: np.ndarray | None
    splits: dict[str, np.ndarray]
    where: str


def _assemble(entry: CatalogEntry, parts: _Parts) -> Graph:
    n = parts.x.shape[0]
    edge_index = parts.edge_index
    if edge_index.size and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        bad = int(edge_index.min()) if int(edge_index.min()) < 0 else int(edge_index.max())
        raise DataError(f"{parts.where}: edge endpoint {bad} outside the {n} nodes")
    y = None
    if parts.y is not None:
        if parts.y.shape != (n,):
            raise DataError(f"{parts.where}: {parts.y.shape[0]} labels for {n} nodes")
        y = torch.from_numpy(np.ascontiguousarray(parts.y, dtype=np.int64))
        if y.numel() and (int(y.min()) < -1 or int(y.max()) >= entry.classes):
            bad = int(y.min()) if int(y.min()) < -1 else int(y.max())
            raise DataError(
                f"{parts.where}: label {bad} outside 0..{entry.classes - 1} "
                f"({entry.name} has {entry.classes} classes; -1 marks unlabeled nodes)"
            )
    splits = {}
    for name, ids in parts.splits.items():
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if ids.size and (ids[0] < 0 or ids[-1] >= n):
            raise DataError(f"{parts.where}: {name} split holds node ids outside the {n} nodes")
        splits[name] = torch.from_numpy(ids)
    return Graph.from_edge_index(
        entry.name, torch.from_numpy(edge_index), n, _features(entry, parts.x), y, splits,
        entry.classes,
    )  # fmt: skip


def _features(entry: CatalogEntry, x: np.ndarray | sp.csr_matrix) -> Tensor:
    """float32 features; bag-of-words rows sum to one and stay sparse while sparse enough.

    Row sums are taken as torch sums dense rows (block by block, never the whole dense matrix),
    so the result is bit-identical to normalising the dense matrix, as agc did on PyG's data; a
    sum over the non-zeros alone rounds differently for non-integer values (PubMed's TF-IDF).
    """
    if not entry.bag_of_words:
        return torch.from_numpy(np.ascontiguousarray(_dense(x), dtype=np.float32))
    x = sp.csr_matrix(x, dtype=np.float32)
    x.sum_duplicates()
    x.eliminate_zeros()
    rows, width = x.shape
    step = max(1, _BLOCK_BYTES // max(1, 4 * width))
    sums = np.empty(rows, dtype=np.float32)
    for a in range(0, rows, step):
        sums[a : a + step] = torch.from_numpy(x[a : a + step].toarray()).sum(dim=1).numpy()
    sums[sums == 0] = 1
    x.data /= np.repeat(sums, np.diff(x.indptr))
    x.eliminate_zeros()
    csr = torch.sparse_csr_tensor(
        torch.from_numpy(x.indptr.astype(np.int64)), torch.from_numpy(x.indices.astype(np.int64)),
        torch.from_numpy(x.data), size=x.shape, check_invariants=False,
    )  # fmt: skip
    if x.nnz < SPARSE_DENSITY * rows * width:
        return csr
    return csr.to_dense()


def _dense(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn whatever reading ``path`` raises (a truncated zip, a missing key, bad JSON, ...)
    into one DataError naming the file."""
    try:
        yield
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160]
        raise DataError(
            f"{path}: unreadable or malformed ({type(exc).__name__}: {reason})"
        ) from None


def _npz(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (default: all) of an ``.npz`` file that it holds, read with
    ``allow_pickle=False``: object arrays, which only pickles can hold, are left out."""
    with _reading(path), np.load(path, allow_pickle=False) as f:
        out = {}
        for key in f.files if keys is None else [k for k in keys if k in f.files]:
            try:
                out[key] = f[key]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise
        return out


def _require(arrays: dict[str, np.ndarray], path: Path, *keys: str) -> list[np.ndarray]:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"{path}: no array {', '.join(missing)} (a numeric array is required)")
    return [arrays[k] for k in keys]


def _csr_edges(a: sp.csr_matrix) -> np.ndarray:
    """``[2, E]`` (row, column) of every stored entry of ``a``, zeros and repeats included."""
    rows = np.repeat(np.arange(a.shape[0], dtype=np.int64), np.diff(a.indptr))
    return np.stack([rows, a.indices.astype(np.int64)])


def _without_self_loops(edge_index: np.ndarray) -> np.ndarray:
    return edge_index[:, edge_index[0] != edge_index[1]]


def _read_planetoid(entry: CatalogEntry, base: Path) -> _Parts:
    with _reading(base):  # what read_planetoid's own checks do not name
        data = read_planetoid(base, entry.pyg_name or entry.name)
    return _Parts(data.x, data.edge_index, data.y, data.splits, str(base))


def _read_gnn_benchmark(entry: CatalogEntry, base: Path) -> _Parts:
    """Amazon / Coauthor ``.npz`` (Shchur et al.): CSR attributes and adjacency, labels.

    As in PyG: attributes binarised (positive -> 1), self-loops dropped.
    """
    path = base / entry.raw_files[0]
    f = _npz(path)
    keys = ("attr_data", "attr_indices", "attr_indptr", "attr_shape")
    adj_keys = ("adj_data", "adj_indices", "adj_indptr", "adj_shape")
    with _reading(path):
        a_data, a_ind, a_ptr, a_shape = _require(f, path, *keys)
        x = checked_csr(a_data, a_ind, a_ptr, _shape(a_shape))
        adj = checked_csr(*_require(f, path, *adj_keys[:3]), _shape(f.get("adj_shape")))
    (labels,) = _require(f, path, "labels")
    n = x.shape[0]
    if adj.shape != (n, n):
        raise DataError(f"{path}: adjacency {adj.shape} for {n} attribute rows")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels must be integers, found {labels.dtype}")
    x = sp.csr_matrix(x, dtype=np.float32)
    x.sum_duplicates()
    x.data[x.data > 0] = 1
    return _Parts(x, _without_self_loops(_csr_edges(adj)), labels.reshape(-1), {}, str(path))


def _shape(value: np.ndarray | None) -> tuple[int, int]:
    if value is None or np.asarray(value).shape != (2,) or np.asarray(value).dtype.kind not in "iu":
        raise ValueError("a shape must be two integers")
    return int(value[0]), int(value[1])


def _read_wikics(entry: CatalogEntry, base: Path) -> _Parts:
    """WikiCS ``data.json``: features, labels, adjacency lists and the test mask (its train and
    validation masks are 20 alternative splits, which agc leaves out)."""
    path = base / "data.json"
    with _reading(path):
        data = json.loads(path.read_text())
        x = np.asarray(data["features"], dtype=np.float32)
        labels = np.asarray(data["labels"], dtype=np.int64)
        links = data["links"]
        if x.ndim != 2 or not isinstance(links, list) or len(links) != x.shape[0]:
            raise ValueError("features must be a matrix with one adjacency list per row")
        counts = np.array([len(js) for js in links], dtype=np.int64)
        targets = np.array([j for js in links for j in js], dtype=np.int64)
        test = np.asarray(data["test_mask"], dtype=bool)
        if test.shape != (x.shape[0],):
            raise ValueError("test_mask must hold one flag per node")
    sources = np.repeat(np.arange(x.shape[0], dtype=np.int64), counts)
    splits = {"test": np.flatnonzero(test)}
    return _Parts(x, np.stack([sources, targets]), labels, splits, str(path))


def _read_saint(entry: CatalogEntry, base: Path) -> _Parts:
    """GraphSAINT's release (Flickr, Reddit2): ``adj_full.npz``, ``feats.npy``, ``class_map.json``
    (node -> label; nodes absent are unlabeled) and ``role.json`` (``tr``/``va``/``te`` ids)."""
    adj_path, feats_path = base / "adj_full.npz", base / "feats.npy"
    f = _npz(adj_path)
    with _reading(adj_path):
        adj = checked_csr(
            *_require(f, adj_path, "data", "indices", "indptr"), _shape(f.get("shape"))
        )
    with _reading(feats_path):
        x = np.load(feats_path, allow_pickle=False)
        if x.ndim != 2 or x.dtype.kind not in "biuf":
            raise ValueError(f"expected a numeric matrix, found {x.dtype} {list(x.shape)}")
    n = x.shape[0]
    y = np.full(n, -1, dtype=np.int64)
    class_map, role_path = base / "class_map.json", base / "role.json"
    with _reading(class_map):
        items = json.loads(class_map.read_text()).items()
        nodes = np.array([int(k) for k, _ in items], dtype=np.int64)
        values = np.array([v for _, v in items], dtype=np.int64)
        if nodes.size and (nodes.min() < 0 or nodes.max() >= n):
            raise ValueError(f"node ids outside the {n} nodes")
        y[nodes] = values
    with _reading(role_path):
        role = json.loads(role_path.read_text())
        splits = {
            name: np.asarray(role[key], dtype=np.int64).reshape(-1)
            for name, key in (("train", "tr"), ("val", "va"), ("test", "te"))
        }
    return _Parts(x, _csr_edges(adj), y, splits, str(base))


def _read_reddit(entry: CatalogEntry, base: Path) -> _Parts:
    """DGL's Reddit release: ``reddit_data.npz`` (features, labels, node types 1/2/3 =
    train/val/test) and the SciPy sparse ``reddit_graph.npz``."""
    data_path, graph_path = base / "reddit_data.npz", base / "reddit_graph.npz"
    f = _npz(data_path)
    x, labels, types = _require(f, data_path, "feature", "label", "node_types")
    edge_index = _sparse_npz_edges(graph_path)
    with _reading(data_path):
        if x.ndim != 2 or x.dtype.kind not in "biuf" or types.shape != (x.shape[0],):
            raise ValueError("feature must be a matrix with one node type per row")
    splits = {
        name: np.flatnonzero(types == t) for t, name in ((1, "train"), (2, "val"), (3, "test"))
    }
    return _Parts(x, edge_index, labels.reshape(-1), splits, str(base))


def _sparse_npz_edges(path: Path) -> np.ndarray:
    """``[2, E]`` entries of a matrix saved by ``scipy.sparse.save_npz`` (COO, CSR or CSC)."""
    f = _npz(path)
    with _reading(path):
        (fmt,) = _require(f, path, "format")
        fmt = fmt.item()
        fmt = fmt.decode("ascii") if isinstance(fmt, bytes) else str(fmt)
        shape = _shape(f.get("shape"))
        if fmt == "coo":
            row, col = _require(f, path, "row", "col")
            if row.shape != col.shape or row.ndim != 1:
                raise ValueError("row and col must be 1-D of one length")
            return np.stack([row.astype(np.int64), col.astype(np.int64)])
        if fmt not in ("csr", "csc"):
            raise ValueError(f"sparse format {fmt!r}")
        data, indices, indptr = _require(f, path, "data", "indices", "indptr")
        flip = fmt == "csc"
        a = checked_csr(data, indices, indptr, shape[::-1] if flip else shape)
        edges = _csr_edges(a)
        return edges[::-1].copy() if flip else edges


_READERS = {
    "planetoid": _read_planetoid,
    "amazon": _read_gnn_benchmark,
    "coauthor": _read_gnn_benchmark,
    "wikics": _read_wikics,
    "flickr": _read_saint,
    "reddit2": _read_saint,
    "reddit": _read_reddit,
}


def _missing_message(entry: CatalogEntry, root: Path, missing: list[Path], exc: object) -> str:
    names = ", ".join(p.name for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
    reason = " ".join(str(exc).split())[:120]
    return (
        f"{entry.name}: raw files missing in {raw_dir(entry, root)} ({names}) and the download "
        f"failed ({reason}); get them from {entry.url}"
    )


def _download(url: str, path: Path) -> None:
    """Fetch ``url`` (TLS verified) into ``path`` through a temporary sibling, so an
    interrupted download never leaves a file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.download-{secrets.token_hex(4)}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 8 << 20)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _download_zip(url: str, target: Path, keep: tuple[str, ...], inner: str = "") -> None:
    """Fetch a zip and move the entries ``keep`` of its folder ``inner`` into ``target``
    (entries already there are kept; anything else in the archive is dropped).

    Python's ``extractall`` drops absolute and ``..`` components, so no member lands outside
    the private temporary folder it is extracted into.
    """
    target.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.download-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        archive = tmp / "archive.zip"
        _download(url, archive)
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp / "x")
        for name in keep:
            found = tmp / "x" / inner / name
            if found.exists() and not (target / name).exists():
                os.replace(found, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_ogb(entry: CatalogEntry, base: Path) -> Graph:
    """Read OGB's node-property raw layout (``ROOT/<Name>/raw``, ``ROOT/<Name>/split``)."""
    if entry.name == "Papers100M":
        keys = ("edge_index", "node_feat", "num_nodes_list")
        data = _npz(base / "raw" / "data.npz", keys)
        edge_index, x, counts = _require(data, base / "raw" / "data.npz", *keys)
        edge_index = torch.from_numpy(edge_index)
        x = torch.from_numpy(x).float()
        num_nodes = int(counts[0])
        labels = _npz(base / "raw" / "node-label.npz", ("node_label",))
        label = _require(labels, base / "raw" / "node-label.npz", "node_label")[0].reshape(-1)
    else:
        edge_index = torch.from_numpy(_read_csv(base / "raw" / "edge.csv.gz", np.int64).T)
        x = torch.from_numpy(_read_csv(base / "raw" / "node-feat.csv.gz", np.float32))
        num_nodes = x.shape[0]
        label = _read_csv(base / "raw" / "node-label.csv.gz", np.float64).reshape(-1)
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise DataError(f"{base / 'raw'}: edges must be pairs of node ids")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise DataError(f"{base / 'raw'}: edge endpoints outside the {num_nodes} nodes")
    if label.shape != (num_nodes,) or x.shape[0] != num_nodes:
        raise DataError(f"{base / 'raw'}: features, labels and node count disagree")
    y = torch.from_numpy(np.where(np.isnan(label), -1, label).astype(np.int64))
    splits = {}
    split_root = base / "split"
    if split_root.is_dir():
        for sub in sorted(split_root.iterdir()):
            for part in ("train", "valid", "test"):
                f = sub / f"{part}.csv.gz"
                if f.is_file():
                    ids = torch.from_numpy(_read_csv(f, np.int64).reshape(-1))
                    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_nodes):
                        raise DataError(f"{f}: node ids outside the {num_nodes} nodes")
                    splits[part] = ids
    splits["labeled"] = (y >= 0).nonzero().view(-1)
    return Graph.from_edge_index(entry.name, edge_index, num_nodes, x, y, splits, entry.classes)


def _read_csv(path: Path, dtype: type) -> np.ndarray:
    with _reading(path):
        try:
            import pandas as pd  # much faster than numpy for the large OGB files, when present

            return pd.read_csv(path, header=None, dtype=dtype).to_numpy()
        except ImportError:
            return np.loadtxt(path, delimiter=",", dtype=dtype, ndmin=2)


def _download_ogb(entry: CatalogEntry, root: Path) -> None:
    """OGB's zip holds ``<name>/raw/...`` and ``<name>/split/...``: unpack it to ``ROOT/<Name>``."""
    inner = Path(entry.url).stem.replace("-bin", "")
    _download_zip(entry.url, raw_dir(entry, root), ("raw", "split"), inner)


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
