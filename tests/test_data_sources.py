"""Graph sources: catalog metadata, real loaders (read-only root), cache, user files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agc_cli.data import catalog
from agc_cli.data.graph import Graph, to_csc
from agc_cli.data.sources import describe_source, load_graph
from agc_cli.errors import DataError, UsageError


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def test_catalog_names_are_case_insensitive_and_have_metadata():
    expected = {
        "cora": (2708, 10556, 1433, 7),
        "CITESEER": (3327, 9104, 3703, 6),
        "Reddit": (232965, 114615892, 602, 41),
        "ogbn-products": (2449029, 123718280, 100, 47),
        "papers100m": (111059956, 3231371744, 128, 172),
    }
    for name, sizes in expected.items():
        e = catalog.lookup(name)
        assert e is not None and (e.nodes, e.edges, e.features, e.classes) == sizes
    names = {e.name for e in catalog.CATALOG.values()}
    assert names == {
        "Cora", "CiteSeer", "PubMed", "Photo", "Computers", "CS", "Physics", "WikiCS",
        "Flickr", "ArXiv", "Reddit2", "Reddit", "Products", "Papers100M",
    }  # fmt: skip
    assert catalog.lookup("not-a-dataset") is None


def test_describe_catalog_dataset_needs_no_data(tmp_path):
    info = describe_source("Reddit", tmp_path)
    assert (info.nodes, info.classes, info.available) == (232965, 41, False)


@pytest.mark.parametrize(
    ("name", "nodes", "edges", "features", "classes"),
    [
        ("Cora", 2708, 10556, 1433, 7),
        ("CiteSeer", 3327, 9104, 3703, 6),
        ("Photo", 7650, 238162, 745, 8),
    ],
)
def test_real_loader_matches_catalog_and_never_writes_root(
    shared_data, tmp_path, name, nodes, edges, features, classes
):
    before = snapshot(shared_data)
    g = load_graph(name.lower(), shared_data, tmp_path / "cache")
    assert snapshot(shared_data) == before
    assert (g.num_nodes, g.num_edges, g.num_features, g.num_classes) == (
        nodes, edges, features, classes,
    )  # fmt: skip
    assert g.y is not None and g.y.shape == (nodes,)
    # undirected: the transpose of the adjacency is itself
    ei = g.edge_index()
    key = ei[0] * nodes + ei[1]
    rkey = ei[1] * nodes + ei[0]
    assert torch.equal(torch.sort(key).values, torch.sort(rkey).values)
    # bag-of-words rows are normalised to sum 1 (or are empty)
    sums = g.dense_features().sum(1)
    assert torch.allclose(sums[sums > 0], torch.ones_like(sums[sums > 0]), atol=1e-5)


def test_bag_of_words_features_kept_sparse(shared_data, tmp_path):
    g = load_graph("Cora", shared_data, tmp_path / "cache")
    assert g.sparse_features
    idx = torch.tensor([5, 0, 5])
    assert torch.equal(g.feature_rows(idx), g.dense_features()[idx])


def test_second_load_comes_from_the_cache(shared_data, tmp_path):
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    first = load_graph("CiteSeer", shared_data, cache)
    cold = time.perf_counter() - t0
    assert list((cache / "graphs").glob("*.pt"))
    t0 = time.perf_counter()
    second = load_graph("CiteSeer", shared_data, cache)
    warm = time.perf_counter() - t0
    assert torch.equal(first.row, second.row) and torch.equal(first.y, second.y)
    assert torch.equal(first.dense_features(), second.dense_features())
    assert warm < cold


def test_missing_raw_files_offline_is_exit_3_with_path(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DataError) as info:
        load_graph("Cora", root, tmp_path / "cache")
    assert info.value.exit_code == 3
    msg = str(info.value)
    assert str(root / "Cora" / "raw") in msg and "ind.cora.x" in msg and "http" in msg


def test_unknown_dataset_is_usage_error(tmp_path):
    with pytest.raises(UsageError) as info:
        load_graph("nonsense-graph", tmp_path, tmp_path)
    assert "catalog name" in str(info.value)


def test_to_csc_dedupes_and_symmetrises():
    colptr, row = to_csc(torch.tensor([[0, 0, 1], [1, 1, 2]]), 3)
    assert colptr.tolist() == [0, 1, 3, 4]
    assert row.tolist() == [1, 0, 2, 1]


# ----- user files -------------------------------------------------------------------------


def write_npz(path: Path, edge_index, x, y=None) -> Path:
    arrays = {"edge_index": np.asarray(edge_index), "x": np.asarray(x)}
    if y is not None:
        arrays["y"] = np.asarray(y)
    np.savez(path, **arrays)
    return path


def test_user_npz_graph_loads(tmp_path):
    f = write_npz(tmp_path / "g.npz", [[0, 1], [1, 2]], np.ones((3, 4), np.float32), [0, 1, 1])
    g = load_graph(str(f), tmp_path, tmp_path / "c")
    assert isinstance(g, Graph) and (g.num_nodes, g.num_edges, g.num_classes) == (3, 4, 2)


def test_user_npz_accepts_e_by_2_edges(tmp_path):
    f = write_npz(tmp_path / "g.npz", [[0, 1], [1, 2], [2, 0]], np.ones((3, 2), np.float32))
    assert load_graph(str(f), tmp_path, tmp_path / "c").num_edges == 6


def test_user_directory_and_csv_forms(tmp_path):
    d = tmp_path / "graph"
    d.mkdir()
    np.save(d / "x.npy", np.random.rand(4, 3).astype(np.float32))
    (d / "edges.csv").write_text("source,target\n0,1\n1,2\n2,3\n")
    np.save(d / "y.npy", np.array([0, 0, 1, 1]))
    g_dir = load_graph(str(d), tmp_path, tmp_path / "c")
    g_csv = load_graph(str(d / "edges.csv"), tmp_path, tmp_path / "c")
    assert g_dir.num_edges == g_csv.num_edges == 6
    assert g_dir.num_classes == 2


@pytest.mark.parametrize(
    ("edges", "x", "y", "needle"),
    [
        ([[0, 5], [1, 2]], np.ones((3, 2)), None, "out of range"),
        ([[0, -1], [1, 2]], np.ones((3, 2)), None, "out of range"),
        ([[0, 1, 2]], np.ones((3, 2)), None, "shape"),
        ([[0.5, 1], [1, 2]], np.ones((3, 2)), None, "integers"),
        ([[0, 1], [1, 2]], np.array([[1.0, np.nan]] * 3), None, "NaN"),
        ([[0, 1], [1, 2]], np.array([[1.0, np.inf]] * 3), None, "NaN or inf"),
        ([[0, 1], [1, 2]], np.ones(3), None, "2-D"),
        ([[0, 1], [1, 2]], np.ones((3, 2)), [0, 1], "labels"),
    ],
)
def test_user_file_validation_errors(tmp_path, edges, x, y, needle):
    f = write_npz(tmp_path / "bad.npz", edges, x, y)
    with pytest.raises(DataError) as info:
        load_graph(str(f), tmp_path, tmp_path / "c")
    assert info.value.exit_code == 3
    assert needle in str(info.value) and "bad.npz" in str(info.value)


def test_user_npz_missing_array(tmp_path):
    f = tmp_path / "g.npz"
    np.savez(f, edge_index=np.zeros((2, 1), np.int64))
    with pytest.raises(DataError, match="missing array 'x'"):
        load_graph(str(f), tmp_path, tmp_path / "c")


def test_user_directory_missing_features(tmp_path):
    (tmp_path / "edges.csv").write_text("0,1\n")
    with pytest.raises(DataError, match="x.npy"):
        load_graph(str(tmp_path / "edges.csv"), tmp_path, tmp_path / "c")
