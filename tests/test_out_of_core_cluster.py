"""Clustering every node out of core: streamed metrics equal the in-memory ones on stores,
batched assignment over memory-mapped embeddings equals the in-memory assignment, the sample
fit finds planted clusters, and `agc cluster --out-of-core` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_agc
from graphs import tiny_graph
from sklearn.metrics import normalized_mutual_info_score

from agc_cli.cluster import kmeans, label_metrics, structure_metrics
from agc_cli.cluster.streaming import (
    assign_blocks,
    fit_sample,
    sample_rows,
    streamed_label_metrics,
    streamed_structure_metrics,
)
from agc_cli.data import store, synthetic
from agc_cli.data.graph import Graph, to_csc
from agc_cli.engine.streamed_clustering import cluster_streamed, run_out_of_core_default
from agc_cli.errors import DataError
from agc_cli.utils.npy import NpyWriter, open_npy, read_rows

SPEC = "sbm:nodes=900,clusters=5,degree=8,homophily=0.85,features=12,snr=3,skew=0.5,seed=2"


def stored(tmp_path, graph: Graph | None = None) -> store.StoredGraph:
    if graph is None:
        store.write_synthetic(synthetic.parse_synthetic(SPEC), tmp_path / "s")
    else:
        store.write_graph(graph, tmp_path / "s")
    return store.open_store(tmp_path / "s")


def store_map(graph: store.StoredGraph, name: str) -> np.memmap:
    """The store's file ``name`` as a read-only memory map of the whole file."""
    return open_npy(store.store_file(graph.path, graph.meta["files"][name]["file"]))


def with_self_loops(graph: Graph) -> Graph:
    """``graph`` plus self-loops on a few nodes (stored once, as networkx counts them)."""
    colptr, row = graph.colptr, graph.row.long()
    dst = torch.repeat_interleave(torch.arange(graph.num_nodes), colptr.diff())
    loops = torch.tensor([3, 17, 40])
    edge_index = torch.stack([torch.cat([row, loops]), torch.cat([dst, loops])])
    colptr, row = to_csc(edge_index, graph.num_nodes, undirected=False)
    return Graph("loops", colptr, row, graph.x, graph.y, {}, graph.num_classes)


@pytest.mark.parametrize("source", ["synthetic", "self-loops"])
def test_streamed_structure_metrics_equal_in_memory_on_a_store(tmp_path, source):
    graph = stored(tmp_path, None if source == "synthetic" else with_self_loops(tiny_graph(300)))
    colptr, row = store_map(graph, "colptr"), store_map(graph, "row")
    assert isinstance(row, np.memmap)  # the store's file, read by the streamed metrics
    pred = np.random.default_rng(0).integers(0, 6, size=graph.num_nodes)
    expected = structure_metrics(pred, graph.colptr, graph.row)
    for chunk_edges in (1, 7, 100, 10**9):
        for labels in (pred, pred.astype(np.int32), torch.from_numpy(pred)):
            got = streamed_structure_metrics(labels, colptr, row, chunk_edges=chunk_edges)
            assert got == expected  # the same integer counts, the same arithmetic


def test_streamed_structure_metrics_report_progress_over_every_edge(tmp_path):
    graph = stored(tmp_path)
    done = []
    pred = np.zeros(graph.num_nodes, dtype=np.int32)
    streamed_structure_metrics(pred, store_map(graph, "colptr"), store_map(graph, "row"),
                               chunk_edges=500, progress=done.append)  # fmt: skip
    assert sum(done) == graph.num_edges and len(done) > 1


def test_streamed_structure_metrics_refuse_damaged_row_ids(tmp_path):
    colptr = np.array([0, 1, 2])
    with pytest.raises(DataError, match="leave"):
        streamed_structure_metrics(np.zeros(2, np.int32), colptr, np.array([1, 5]))


@pytest.mark.parametrize(
    "case", ["random", "perfect", "one cluster", "one class", "more clusters than classes"]
)
def test_streamed_label_metrics_equal_in_memory_on_the_labeled_nodes(tmp_path, case):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=1000)
    pred = {
        "random": rng.integers(0, 5, size=1000),
        "perfect": (y + 1) % 4,
        "one cluster": np.zeros(1000, dtype=np.int64),
        "one class": rng.integers(0, 3, size=1000),
        "more clusters than classes": y * 3 + rng.integers(0, 3, size=1000),
    }[case].astype(np.int32)
    if case == "one class":
        y[:] = 2
    y[rng.random(1000) < 0.7] = -1
    np.save(tmp_path / "y.npy", y)
    got = streamed_label_metrics(pred, open_npy(tmp_path / "y.npy"), rows=37)
    assert got == label_metrics(pred, y)  # from the contingency table, the same floats
    assert streamed_label_metrics(pred, np.full(1000, -1)) == {}


def embeddings_file(tmp_path, x: np.ndarray, name: str = "emb.npy") -> np.memmap:
    np.save(tmp_path / name, x)
    return open_npy(tmp_path / name)


def blobs(n: int = 1200, k: int = 4, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, size=n)
    centres = rng.normal(size=(k, dim)) * 6
    return (centres[truth] + rng.normal(size=(n, dim))).astype(np.float32), truth


def test_memmap_assignment_equals_in_memory_assignment(tmp_path):
    x, _ = blobs()
    mapped = embeddings_file(tmp_path, x)
    fit = kmeans(torch.from_numpy(x), 4, seed=0, backend="minibatch", n_init=2)
    exact = ((x[:, None, :].astype(np.float64) - fit.centroids.double().numpy()) ** 2).sum(2)
    for rows in (1, 7, None):
        out = assign_blocks(mapped, fit.centroids, tmp_path / f"labels{rows}.npy", rows=rows)
        labels = np.load(out.path)
        assert labels.dtype == np.int32 and labels.shape == (1200,)
        assert np.array_equal(labels, fit.labels.numpy())  # the fit's own assignment
        assert np.array_equal(labels, exact.argmin(1))
        assert out.inertia == pytest.approx(fit.inertia, rel=1e-6)
        assert out.counts.tolist() == np.bincount(labels, minlength=4).tolist()
    in_memory = assign_blocks(torch.from_numpy(x), fit.centroids, tmp_path / "t.npy")
    assert np.array_equal(np.load(in_memory.path), fit.labels.numpy())


def test_assignment_of_a_float16_file_equals_that_of_its_float32_values(tmp_path):
    x, _ = blobs(seed=3)
    half = x.astype(np.float16)
    mapped = embeddings_file(tmp_path, half)
    centroids = torch.from_numpy(half[:4].astype(np.float32))
    a = assign_blocks(mapped, centroids, tmp_path / "a.npy", normalize=True, rows=100)
    b = assign_blocks(half.astype(np.float32), centroids, tmp_path / "b.npy", normalize=True)
    assert np.array_equal(np.load(a.path), np.load(b.path))


def test_rows_of_a_mapped_file_are_read_not_mapped(tmp_path):
    x, _ = blobs(n=50)
    mapped = embeddings_file(tmp_path, x)
    rows = read_rows(mapped, 10, 20)
    # A plain read into new memory, not a (read-only) view of the mapping.
    assert not np.may_share_memory(rows, mapped) and rows.flags.writeable
    assert np.array_equal(rows, x[10:20])
    view = mapped[5:]  # a slice of a map: read through the mapping, still correct
    assert np.array_equal(read_rows(view, 10, 20), x[15:25])


def test_assignment_refuses_a_non_finite_row_and_leaves_no_file(tmp_path):
    x, _ = blobs(n=300)
    x[123, 2] = np.nan
    with pytest.raises(DataError, match="row 123"):
        assign_blocks(embeddings_file(tmp_path, x), x[:3], tmp_path / "labels.npy", rows=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]


def test_npy_writer_refuses_to_publish_an_incomplete_file(tmp_path):
    with NpyWriter(tmp_path / "a.npy", (10, 2), np.float32) as out:
        out.write(np.ones((4, 2)))
        with pytest.raises(ValueError, match="4 of 10 rows"):
            out.commit()
    assert list(tmp_path.iterdir()) == []
    with NpyWriter(tmp_path / "a.npy", (3, 2), np.float16) as out:
        out.write(np.arange(6).reshape(3, 2))
        out.commit()
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.arange(6).reshape(3, 2))


def test_sample_rows_are_distinct_rows_of_the_file(tmp_path):
    x = np.arange(5000 * 3, dtype=np.float32).reshape(5000, 3)
    rows = sample_rows(embeddings_file(tmp_path, x), 700, seed=4)
    ids = rows[:, 0].astype(np.int64) // 3
    assert np.array_equal(rows, x[ids]) and np.unique(ids).size == 700
    assert np.all(np.diff(ids) > 0)  # file order
    assert np.array_equal(rows, sample_rows(embeddings_file(tmp_path, x), 700, seed=4))


def test_minibatch_fit_on_a_sample_finds_the_planted_clusters(tmp_path):
    spec = "sbm:nodes=6000,clusters=6,degree=6,homophily=0.9,features=16,snr=4,seed=5"
    graph = store.write_synthetic(synthetic.parse_synthetic(spec), tmp_path / "s")
    graph = store.open_store(tmp_path / "s")
    features = store_map(graph, "x")  # the store's [N, F] features as the embeddings
    fit, size = fit_sample(features, 6, seed=0, sample=1500, n_init=3)
    assert size == 1500 and fit.backend == "minibatch"
    out = assign_blocks(features, fit.centroids, tmp_path / "labels.npy", rows=1000)
    nmi = normalized_mutual_info_score(graph.y.numpy(), np.load(out.path))
    assert nmi > 0.9, nmi


def test_cluster_streamed_keeps_the_best_run_and_scores_every_node(tmp_path):
    graph = stored(tmp_path)
    x = graph.dense_features().numpy()
    emb = embeddings_file(tmp_path, x)
    runs = []
    result = cluster_streamed(
        emb, graph, tmp_path / "clusters.npy", n_clusters=5, runs=3, seed=0, normalize=False,
        sample=400, report=lambda i, run: runs.append(run),
    )  # fmt: skip
    labels = np.load(result.labels_file)
    best = min(result.runs, key=lambda r: r.inertia)
    assert labels.shape == (graph.num_nodes,) and len(runs) == 3 and result.sample_rows == 400
    expected = {**label_metrics(labels, graph.y), **structure_metrics(labels, graph.colptr,
                                                                       graph.row)}  # fmt: skip
    assert best.metrics == pytest.approx(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.npy", "emb.npy", "s"]


def test_cli_cluster_out_of_core_on_an_npy_run(capsys, tmp_path):
    graph = stored(tmp_path)
    run = tmp_path / "run"
    r = run_agc(capsys, "train", "--dataset", str(tmp_path / "s"), "--hidden-channels", "16",
                "--epochs", "1", "--run-dir", str(run), "--mini-batch",
                "--batch-size", "300")  # fmt: skip
    assert r.code == 0, r.err
    assert run_agc(capsys, "infer", str(run), "--format", "npy").code == 0
    r = run_agc(capsys, "cluster", str(run), "--embeddings", "embeddings.npy", "--out-of-core",
                "--runs", "2", "--json")  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["nodes"] == report["total_nodes"] == graph.num_nodes
    assert report["clusters_file"] == str(run / "clusters.npy")
    assert len(report["runs"]) == 2 and report["out_of_core"]["sample_rows"] == graph.num_nodes
    labels = np.load(run / "clusters.npy")
    best = min(report["runs"], key=lambda x: x["inertia"])
    assert best["modularity"] == structure_metrics(labels, graph.colptr, graph.row)["modularity"]
    assert best["nmi"] == pytest.approx(label_metrics(labels, graph.y)["nmi"])
    assert json.loads((run / "metrics.json").read_text())["runs"] == report["runs"]
    assert "out of core" in r.err and r.err.count("Run ") == 2


def test_cli_out_of_core_refuses_a_pt_file_and_a_plot(capsys, tmp_path):
    emb = tmp_path / "emb.pt"
    torch.save({"embeddings": torch.zeros(3, 2), "node_ids": torch.arange(3)}, emb)
    r = run_agc(capsys, "cluster", "--embeddings", str(emb), "--dataset", "sbm-small",
                "--out-of-core")  # fmt: skip
    assert r.code == 2 and "reads an .npy matrix" in r.err
    np.save(tmp_path / "emb.npy", np.zeros((3, 2), np.float32))
    r = run_agc(capsys, "cluster", "--embeddings", str(tmp_path / "emb.npy"), "--dataset",
                "sbm-small", "--out-of-core", "--plot", str(tmp_path / "p.png"))  # fmt: skip
    assert r.code == 2 and "--plot" in r.err


def test_cli_out_of_core_refuses_an_npy_of_another_length(capsys, tmp_path):
    stored(tmp_path)
    np.save(tmp_path / "emb.npy", np.zeros((10, 4), np.float32))
    r = run_agc(capsys, "cluster", "--embeddings", str(tmp_path / "emb.npy"), "--dataset",
                str(tmp_path / "s"), "--out-of-core")  # fmt: skip
    assert r.code == 3 and "one row per node" in r.err


def test_run_goes_out_of_core_for_a_store_too_large_for_memory(tmp_path):
    graph = stored(tmp_path)
    data = sum(int(e["bytes"]) for e in graph.meta["files"].values())
    assert run_out_of_core_default(graph, 16, available=data - 1)  # the store exceeds memory
    embeddings = graph.num_nodes * 16 * 4
    assert run_out_of_core_default(graph, 16, available=3 * embeddings)  # > a quarter of it
    assert not run_out_of_core_default(graph, 16, available=100 * (data + embeddings))
    in_memory = synthetic.generate(synthetic.parse_synthetic(SPEC))
    assert not run_out_of_core_default(in_memory, 16, available=1)


def test_cli_run_out_of_core_embeds_and_clusters_every_node_through_files(capsys, tmp_path):
    graph = stored(tmp_path)
    common = ["run", "--dataset", str(tmp_path / "s"), "--hidden-channels", "16", "--epochs",
              "2", "--mini-batch", "--batch-size", "300", "--runs", "2", "--json"]  # fmt: skip
    r = run_agc(capsys, *common, "--run-dir", str(tmp_path / "ooc"), "--out-of-core")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    run = tmp_path / "ooc"
    emb = np.load(run / "embeddings.npy")
    labels = np.load(run / "clusters.npy")
    assert emb.shape == (graph.num_nodes, 16) and labels.shape == (graph.num_nodes,)
    assert not (run / "embeddings.pt").exists()  # nothing held every node in memory
    best = min(report["metrics"]["runs"], key=lambda x: x["inertia"])
    assert best["nmi"] == pytest.approx(label_metrics(labels, graph.y)["nmi"])
    assert "out of core" in r.err and [s["stage"] for s in report["stages"]] == [
        "load + setup", "train", "infer", "cluster", "total"]  # fmt: skip
    # The same run in memory trains the same model: the streamed file holds its embeddings.
    r = run_agc(capsys, *common, "--run-dir", str(tmp_path / "mem"), "--in-memory")
    assert r.code == 0, r.err
    in_memory = torch.load(tmp_path / "mem" / "embeddings.pt", weights_only=True)
    assert torch.equal(in_memory["node_ids"], torch.arange(graph.num_nodes))
    np.testing.assert_allclose(emb, in_memory["embeddings"].numpy(), rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "mem" / "clusters.npy").exists()
