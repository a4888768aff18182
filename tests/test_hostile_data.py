"""Hostile data files: planted pickles never run, store files never lead outside the store,
the cache follows the raw files, damaged store rows are data errors; and the safe loaders
still build the graphs PyG builds."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from cli_helpers import run_agc
from graphs import tiny_graph

from agc_cli.data import catalog, safe_pickle, store
from agc_cli.data.graph import Graph, row_normalize
from agc_cli.data.real import SPARSE_DENSITY, load_real
from agc_cli.data.sources import load_graph
from agc_cli.errors import DataError
from agc_cli.sampling import make_loader
from agc_cli.sampling.loader import GraphFeatureStore

PICKLED = ("x", "tx", "allx", "y", "ty", "ally", "graph")


class Payload:
    """Unpickling this with :mod:`pickle` creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def payload_bytes(marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps(Payload(marker), protocol=protocol)


def assert_payload_runs_under_plain_pickle(tmp_path: Path, data_for) -> None:
    """The planted bytes are a real exploit: plain pickle runs them (so the test means it)."""
    control = tmp_path / "control-marker"
    pickle.loads(data_for(control))
    assert control.exists()
    control.unlink()


# ----- fake raw files in each catalog format (written here with numpy/scipy) --------------


def write_planetoid(folder: Path, name: str, seed: int = 0, gaps: bool = False) -> None:
    """Planetoid's eight files for a random graph: 520 allx rows (6 labelled for training),
    12 test rows in shuffled id order; with ``gaps`` the test ids skip nodes (CiteSeer)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_all, n_test, f, c = 520, 12, 9, 3

    def feats(rows: int) -> sp.csr_matrix:
        return sp.csr_matrix((rng.random((rows, f)) < 0.3).astype(np.float32))

    def onehot(rows: int) -> np.ndarray:
        return np.eye(c)[rng.integers(0, c, rows)]

    allx, ally, tx, ty = feats(n_all), onehot(n_all), feats(n_test), onehot(n_test)
    span = n_test + (3 if gaps else 0)
    ids = np.arange(n_all, n_all + span)
    if gaps:
        inner = rng.choice(ids[1:-1], n_test - 2, replace=False)
        ids = np.sort(np.concatenate([inner, ids[[0, -1]]]))
    n = n_all + span
    graph = collections.defaultdict(list)
    for i in range(n):  # a few neighbours each, a self-loop on every fifth node
        graph[i] = sorted(set(rng.integers(0, n, 3).tolist()) | ({i} if i % 5 == 0 else set()))
    objects = dict(x=allx[:6], tx=tx, allx=allx, y=ally[:6], ty=ty, ally=ally, graph=graph)
    for key, obj in objects.items():
        (folder / f"ind.{name}.{key}").write_bytes(pickle.dumps(obj, protocol=2))
    test_index = rng.permutation(ids)
    (folder / f"ind.{name}.test.index").write_text("\n".join(map(str, test_index)) + "\n")


def write_gnn_benchmark(path: Path, seed: int = 0) -> None:
    n, f = 40, 11
    path.parent.mkdir(parents=True, exist_ok=True)
    attr = sp.random(n, f, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    attr.data = np.round(attr.data * 3)  # explicit zeros, ones and twos
    adj = sp.random(n, n, density=0.1, format="lil", random_state=seed + 1, dtype=np.float32)
    adj.setdiag(1)
    adj = sp.csr_matrix(adj)
    np.savez(
        path, attr_data=attr.data, attr_indices=attr.indices, attr_indptr=attr.indptr,
        attr_shape=np.array(attr.shape), adj_data=adj.data, adj_indices=adj.indices,
        adj_indptr=adj.indptr, adj_shape=np.array(adj.shape),
        labels=np.random.default_rng(seed).integers(0, 4, n), class_names=np.array(["a", "b"]),
    )  # fmt: skip


def write_wikics(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = 25
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "features": rng.random((n, 5)).tolist(),
        "labels": rng.integers(0, 3, n).tolist(),
        "links": [sorted(set(rng.integers(0, n, 3).tolist())) for _ in range(n)],
        "train_masks": (rng.random((3, n)) < 0.5).tolist(),
        "val_masks": (rng.random((3, n)) < 0.5).tolist(),
        "test_mask": (rng.random(n) < 0.5).tolist(),
        "stopping_masks": (rng.random((3, n)) < 0.5).tolist(),
    }
    path.write_text(json.dumps(data))


def write_saint(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = 30
    folder.mkdir(parents=True, exist_ok=True)
    adj = sp.random(n, n, density=0.1, format="csr", random_state=seed, dtype=np.float32)
    np.savez(
        folder / "adj_full.npz", data=adj.data, indices=adj.indices, indptr=adj.indptr,
        shape=np.array(adj.shape),
    )  # fmt: skip
    np.save(folder / "feats.npy", rng.random((n, 6)))
    labeled = rng.permutation(n)[: n - 4]
    class_map = {str(i): int(rng.integers(0, 3)) for i in labeled}
    (folder / "class_map.json").write_text(json.dumps(class_map))
    perm = rng.permutation(n).tolist()
    role = {"tr": perm[:10], "va": perm[10:15], "te": perm[15:25]}
    (folder / "role.json").write_text(json.dumps(role))


def write_reddit(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = 30
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "reddit_data.npz", feature=rng.random((n, 6)).astype(np.float32),
        label=rng.integers(0, 3, n), node_types=rng.integers(1, 4, n),
    )  # fmt: skip
    sp.save_npz(folder / "reddit_graph.npz", sp.random(n, n, density=0.15, random_state=seed))


FORMATS = {
    "Cora": lambda raw, seed=0: write_planetoid(raw, "cora", seed),
    "CiteSeer": lambda raw, seed=0: write_planetoid(raw, "citeseer", seed, gaps=True),
    "Photo": lambda raw, seed=0: write_gnn_benchmark(raw / "amazon_electronics_photo.npz", seed),
    "Physics": lambda raw, seed=0: write_gnn_benchmark(raw / "ms_academic_phy.npz", seed),
    "WikiCS": lambda raw, seed=0: write_wikics(raw / "data.json", seed),
    "Flickr": write_saint,
    "Reddit2": write_saint,
    "Reddit": write_reddit,
}


def fake_root(root: Path, name: str, seed: int = 0) -> Path:
    FORMATS[name](root / name / "raw", seed)
    return root


def small_entry(name: str) -> catalog.CatalogEntry:
    """The catalog entry with room for the fake files' labels (at most 4 classes)."""
    return dataclasses.replace(catalog.lookup(name), classes=4)


def same_graph(a: Graph, b: Graph) -> bool:
    return (
        torch.equal(a.colptr, b.colptr)
        and torch.equal(a.row, b.row)
        and a.sparse_features == b.sparse_features
        and torch.equal(a.dense_features(), b.dense_features())
        and torch.equal(a.y, b.y)
        and a.splits.keys() == b.splits.keys()
        and all(torch.equal(a.splits[k], b.splits[k]) for k in a.splits)
    )


# ----- class 1: no code execution through raw or processed files ------------------------


@pytest.mark.parametrize("name", PICKLED)
def test_a_pickle_planted_as_a_planetoid_raw_file_never_runs(tmp_path, name):
    root = fake_root(tmp_path / "root", "Cora")
    marker = tmp_path / "marker"
    assert_payload_runs_under_plain_pickle(tmp_path, payload_bytes)
    (root / "Cora" / "raw" / f"ind.cora.{name}").write_bytes(payload_bytes(marker))
    with pytest.raises(DataError) as info:
        load_graph("Cora", root, tmp_path / "cache")
    assert info.value.exit_code == 3
    assert f"ind.cora.{name}" in str(info.value) and "nothing in it was run" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_payload_hidden_inside_an_array_state_never_runs(tmp_path, protocol):
    """Allowed globals around a forbidden one: the reader refuses it, nothing runs."""
    marker = tmp_path / "marker"
    matrix = sp.csr_matrix(np.eye(3, dtype=np.float32))
    matrix.maxprint = Payload(marker)  # travels in the matrix's state dict
    path = tmp_path / "ind.cora.x"
    path.write_bytes(pickle.dumps(matrix, protocol=protocol))
    with pytest.raises(DataError, match=r"refused global (__builtin__|builtins)\.exec"):
        safe_pickle.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, needle",
    [
        (np.array([object(), 1], dtype=object), "refused global"),  # object arrays pickle items
        (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "fields or sub-arrays"),
        ({"a": np.float64(1.0)}, "refused global"),  # a numpy scalar is not an array
        (collections.OrderedDict(a=1), "refused global"),
    ],
)
def test_the_planetoid_reader_admits_only_plain_numeric_arrays(tmp_path, obj, needle):
    path = tmp_path / "ind.cora.ally"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match=needle):
        safe_pickle.load(path)


def test_a_truncated_or_non_pickle_raw_file_is_a_data_error(tmp_path):
    root = fake_root(tmp_path / "root", "Cora")
    allx = root / "Cora" / "raw" / "ind.cora.allx"
    allx.write_bytes(allx.read_bytes()[:200])
    with pytest.raises(DataError, match="ind.cora.allx"):
        load_graph("Cora", root, tmp_path / "cache")
    (root / "Cora" / "raw" / "ind.cora.test.index").write_text("one\ntwo\n")
    with pytest.raises(DataError):
        load_graph("Cora", root, tmp_path / "cache")


def test_an_npz_whose_labels_are_a_pickled_object_array_never_runs(tmp_path):
    root = fake_root(tmp_path / "root", "Photo")
    path = root / "Photo" / "raw" / "amazon_electronics_photo.npz"
    arrays = dict(np.load(path))
    marker = tmp_path / "marker"
    arrays["labels"] = np.array([Payload(marker)], dtype=object)
    np.savez(path, **arrays)
    control = np.load(path, allow_pickle=True)["labels"]  # what an unsafe loader would do
    assert control is not None and marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match="labels") as info:
        load_graph("Photo", root, tmp_path / "cache")
    assert info.value.exit_code == 3
    assert not marker.exists()


def plant_processed(folder: Path, marker: Path) -> None:
    """torch-saved payloads under every name PyG would look for in ``processed/``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("data.pt", "pre_transform.pt", "pre_filter.pt", "data_undirected.pt"):
        torch.save(Payload(marker), folder / name)


def test_processed_files_planted_in_the_cache_or_root_are_never_read(tmp_path, capsys):
    root = fake_root(tmp_path / "root", "Cora")
    cache = tmp_path / "cache"
    marker = tmp_path / "marker"
    plant_processed(cache / "pyg" / "Cora" / "processed", marker)
    plant_processed(root / "Cora" / "processed", marker)
    torch.load(root / "Cora" / "processed" / "data.pt", weights_only=False)  # a real exploit
    assert marker.exists()
    marker.unlink()
    graph = load_graph("Cora", root, cache)
    assert graph.num_nodes == 532 and not marker.exists()
    r = run_agc(
        capsys, "convert", "Cora", str(tmp_path / "store"), "--root", str(root),
        "--cache-dir", str(cache),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert not marker.exists()


def test_cli_exits_3_on_a_planted_raw_pickle(tmp_path, capsys):
    root = fake_root(tmp_path / "root", "Cora")
    marker = tmp_path / "marker"
    (root / "Cora" / "raw" / "ind.cora.graph").write_bytes(payload_bytes(marker))
    r = run_agc(
        capsys, "convert", "Cora", str(tmp_path / "store"), "--root", str(root),
        "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert r.code == 3, r.err
    assert "ind.cora.graph" in r.err and "Traceback" not in r.err
    assert not marker.exists()


# ----- the safe loaders build PyG's graphs -----------------------------------------------


def pyg_graph(entry: catalog.CatalogEntry, data) -> Graph:
    """What agc built from PyG's dataset object before it read the files itself."""
    x = data.x.float()
    if entry.bag_of_words:
        x = row_normalize(x)
        if (x != 0).float().mean() < SPARSE_DENSITY:
            x = x.to_sparse_csr()
    splits = {
        name.removesuffix("_mask"): mask.nonzero().view(-1)
        for name in ("train_mask", "val_mask", "test_mask")
        if (mask := getattr(data, name, None)) is not None and mask.dim() == 1
    }
    return Graph.from_edge_index(
        entry.name, data.edge_index, data.num_nodes, x, data.y.long().view(-1), splits,
        entry.classes,
    )  # fmt: skip


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_raw_format_gives_the_graph_pyg_builds_from_the_same_files(tmp_path, name):
    from torch_geometric import datasets

    entry = small_entry(name)
    ours = load_real(entry, fake_root(tmp_path / "ours", name))
    theirs = tmp_path / "pyg"
    shutil.copytree(tmp_path / "ours" / name, theirs / name)
    if entry.loader == "planetoid":
        data = datasets.Planetoid(str(theirs), name)[0]
    elif entry.loader in ("amazon", "coauthor"):
        cls = datasets.Amazon if entry.loader == "amazon" else datasets.Coauthor
        data = cls(str(theirs), entry.pyg_name)[0]
    elif entry.loader == "wikics":
        data = datasets.WikiCS(str(theirs / name), is_undirected=True)[0]
    else:
        cls = {"flickr": datasets.Flickr, "reddit2": datasets.Reddit2, "reddit": datasets.Reddit}
        data = cls[entry.loader](str(theirs / name))[0]
    assert same_graph(ours, pyg_graph(entry, data))


def digest(graph: Graph) -> str:
    """A digest of the topology, the features (as CSR parts), the labels and the splits."""
    x = graph.x if graph.sparse_features else graph.x.to_sparse_csr()
    h = hashlib.sha1()
    for t in (graph.colptr, graph.row, x.crow_indices(), x.col_indices(), x.values(), graph.y):
        h.update(str(t.dtype).encode() + t.contiguous().numpy().tobytes())
    for name in sorted(graph.splits):
        h.update(name.encode() + graph.splits[name].numpy().tobytes())
    return h.hexdigest()[:16]


# Measured on the files in ../shared/data with agc's loader before it read
# raw files itself (it was built on PyG's dataset classes)
# (nodes, edges, feature non-zeros, sparse features, label histogram, split sizes, digest).
REAL = {
    "Cora": (
        2708, 10556, 49216, True, [351, 217, 418, 818, 426, 298, 180], (140, 500, 1000),
        "07fbe2984bfc3108",
    ),
    "CiteSeer": (
        3327, 9104, 105165, True, [264, 590, 668, 701, 596, 508], (120, 500, 1000),
        "fa6a82cafe27b402",
    ),
    "Photo": (
        7650, 238162, 1979909, False, [369, 1686, 703, 915, 882, 823, 1941, 331], None,
        "f7ef1c6690a66923",
    ),
    "Physics": (
        34493, 495924, 1137311, True, [5750, 5045, 17426, 2753, 3519], None,
        "bf8e593c65f1d9e3",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REAL))
def test_real_datasets_keep_the_graphs_the_pyg_based_loader_built(shared_data, tmp_path, name):
    root = tmp_path / "root"
    (root / name).mkdir(parents=True)
    (root / name / "raw").symlink_to(shared_data / name / "raw", target_is_directory=True)
    g = load_graph(name, root, tmp_path / "cache")
    nodes, edges, nnz, sparse, histogram, splits, expected = REAL[name]
    assert (g.num_nodes, g.num_edges) == (nodes, edges)
    assert g.sparse_features == sparse and g.x.dtype == torch.float32
    x = g.x if g.sparse_features else g.x.to_sparse_csr()
    assert int((x.values() != 0).sum()) == nnz
    owner = torch.repeat_interleave(torch.arange(nodes), x.crow_indices().diff())
    row_sums = torch.zeros(nodes).index_add_(0, owner, x.values())
    assert torch.all(((row_sums - 1).abs() < 1e-4) | (row_sums == 0))  # bag-of-words: sum 1
    assert torch.bincount(g.y).tolist() == histogram
    assert not torch.any(g.row == g.col())  # no self-loops
    if splits is None:
        assert g.splits == {}
    else:
        assert tuple(g.splits[k].numel() for k in ("train", "val", "test")) == splits
        assert torch.equal(g.splits["train"], torch.arange(splits[0]))
    assert digest(g) == expected


# ----- class 8: the cache follows the raw files --------------------------------------------


def test_the_cache_is_keyed_by_the_raw_files_not_the_name(tmp_path):
    cache = tmp_path / "cache"
    a = fake_root(tmp_path / "a", "Cora", seed=1)
    b = fake_root(tmp_path / "b", "Cora", seed=2)
    from_a = load_graph("Cora", a, cache)
    from_b = load_graph("Cora", b, cache)
    assert not same_graph(from_a, from_b)
    assert same_graph(from_b, load_real(catalog.lookup("Cora"), b))
    assert same_graph(load_graph("Cora", a, cache), from_a)  # each root keeps its entry
    assert len(list((cache / "graphs").glob("Cora-*.pt"))) == 2
    # A raw file replaced in place is another graph too.
    write_planetoid(a / "Cora" / "raw", "cora", seed=3)
    assert same_graph(load_graph("Cora", a, cache), load_real(catalog.lookup("Cora"), a))
    assert not same_graph(load_graph("Cora", a, cache), from_a)


def test_disk_storage_is_keyed_by_the_raw_files_too(tmp_path):
    cache = tmp_path / "cache"
    a = fake_root(tmp_path / "a", "Cora", seed=1)
    b = fake_root(tmp_path / "b", "Cora", seed=2)
    from_a = load_graph("Cora", a, cache, storage="disk")
    from_b = load_graph("Cora", b, cache, storage="disk")
    assert from_a.path != from_b.path
    assert not torch.equal(from_a.y, from_b.y)


# ----- class 2: store files stay inside the store ----------------------------------------


def make_store(tmp_path: Path, **kwargs) -> Path:
    directory = tmp_path / "store"
    store.write_graph(tiny_graph(**kwargs), directory)
    return directory


def rewrite_meta(directory: Path, edit) -> None:
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked-dir", "subdir"])
def test_store_files_leading_outside_the_store_are_refused(tmp_path, how):
    directory = make_store(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    # A perfect copy, so that reading it would succeed: only the confinement refuses it.
    shutil.copy(directory / "y.npy", outside / "y.npy")
    if how == "dotdot":
        rewrite_meta(directory, lambda m: m["files"]["y"].update(file="../outside/y.npy"))
    elif how == "absolute":
        rewrite_meta(directory, lambda m: m["files"]["y"].update(file=str(outside / "y.npy")))
    elif how == "symlink":
        (directory / "y.npy").unlink()
        (directory / "y.npy").symlink_to(outside / "y.npy")
    elif how == "symlinked-dir":
        (directory / "sub").symlink_to(outside, target_is_directory=True)
        rewrite_meta(directory, lambda m: m["files"]["y"].update(file="sub/y.npy"))
    else:
        rewrite_meta(directory, lambda m: m["files"]["y"].update(file="sub/y.npy"))
    with pytest.raises(DataError) as info:
        store.open_store(directory)
    assert info.value.exit_code == 3 and "y.npy" in str(info.value)


def test_a_store_naming_etc_passwd_never_echoes_it(tmp_path, capsys):
    directory = make_store(tmp_path)
    rewrite_meta(directory, lambda m: m["files"]["y"].update(file="/etc/passwd"))
    r = run_agc(capsys, "convert", str(directory), str(tmp_path / "copy"))
    assert r.code == 3, r.err
    assert "/etc/passwd" in r.err and "root:" not in r.err + r.out


def test_a_symlink_inside_the_store_to_its_own_file_is_allowed(tmp_path):
    directory = make_store(tmp_path)
    (directory / "y.npy").rename(directory / "labels.npy")
    (directory / "y.npy").symlink_to("labels.npy")
    assert store.open_store(directory).y.numel() == 60


# ----- class 4 (cheap part): damaged rows are found as batches are read ------------------


def damage(directory: Path, name: str, position: int, value) -> None:
    """Write ``value`` at element ``position`` of ``name``.npy and re-record the checksum:
    damage of the kind the open-time checksum (first and last MiB) does not see."""
    path = directory / f"{name}.npy"
    array = np.load(path, mmap_mode="r+")
    array.reshape(-1)[position] = value
    array.flush()
    del array
    rewrite_meta(directory, lambda m: m["files"][name].update(checksum=store.file_checksum(path)))


def test_a_nan_feature_in_a_dense_store_is_a_data_error_naming_file_and_row(tmp_path):
    directory = make_store(tmp_path, nodes=200, features=8)
    damage(directory, "x", 37 * 8 + 3, np.nan)
    graph = store.open_store(directory)
    features = GraphFeatureStore(graph)
    from torch_geometric.data import TensorAttr

    assert features.get_tensor(TensorAttr(None, "x", torch.tensor([1, 2, 36]))).shape == (3, 8)
    with pytest.raises(DataError, match=r"x\.npy: row 37 holds a non-finite") as info:
        features.get_tensor(TensorAttr(None, "x", torch.tensor([5, 37, 9])))
    assert info.value.exit_code == 3


def test_a_nan_or_a_wild_column_in_a_sparse_store_is_a_data_error(tmp_path):
    directory = make_store(tmp_path, nodes=200, features=16, sparse=True)
    graph = store.open_store(directory)
    node = 50
    first = int(graph.x.crow_indices()[node])
    assert graph.x.crow_indices()[node + 1] > first
    damage(directory, "x_values", first, np.inf)
    with pytest.raises(DataError, match=rf"x_values\.npy: node {node} holds a non-finite"):
        store.open_store(directory).sparse_feature_rows(torch.tensor([3, node]))
    damage(directory, "x_values", first, 1.0)
    damage(directory, "x_col", first, 10**6)
    with pytest.raises(DataError, match=rf"x_col\.npy: node {node} holds feature column"):
        store.open_store(directory).feature_rows(torch.tensor([node]))


def test_an_out_of_range_neighbour_id_in_a_store_is_a_data_error_naming_the_position(tmp_path):
    directory = make_store(tmp_path, nodes=200)
    graph = store.open_store(directory)
    target = 10
    position = int(graph.colptr[target])  # the first neighbour of node 10
    damage(directory, "row", position, 10**6)
    graph = store.open_store(directory)
    loader = make_loader(graph, torch.tensor([target]), [-1], batch_size=1, sampler="agc")
    with pytest.raises(DataError, match=rf"row {position} holds node id 1000000") as info:
        next(iter(loader))
    assert info.value.exit_code == 3


def test_a_downloaded_zip_never_writes_outside_the_raw_folder(tmp_path, monkeypatch):
    """Reddit arrives as a zip: members named ``../..`` or absolute land inside a private
    temporary folder, only the expected files reach ``raw/``, and the graph loads."""
    import io
    import zipfile

    write_reddit(tmp_path / "files")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("reddit_data.npz", "reddit_graph.npz"):
            z.write(tmp_path / "files" / name, name)
        z.writestr("../../escaped.txt", "outside")
        z.writestr(str(tmp_path / "absolute.txt"), "outside")
    monkeypatch.setattr(
        "urllib.request.urlopen", lambda url, **kwargs: io.BytesIO(archive.getvalue())
    )
    root = tmp_path / "deep" / "root"
    graph = load_real(small_entry("Reddit"), root)
    assert graph.num_nodes == 30
    assert sorted(p.name for p in (root / "Reddit" / "raw").iterdir()) == [
        "reddit_data.npz", "reddit_graph.npz",
    ]  # fmt: skip
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path / "absolute.txt").exists()
    assert [p.name for p in (root / "Reddit").iterdir()] == ["raw"]  # no leftovers
