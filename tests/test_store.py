"""On-disk stores: conversion round trips, the streaming synthetic writer, refusals, corrupted
files, and training/inference from memory maps equal to the in-memory graph."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_agc
from graphs import tiny_graph
from torch_geometric.data import TensorAttr

from agc_cli.data import store, synthetic
from agc_cli.data.graph import Graph
from agc_cli.data.sources import load_graph
from agc_cli.engine.inference import layerwise
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.errors import DataError, UsageError
from agc_cli.sampling import make_loader
from agc_cli.sampling.loader import GraphFeatureStore
from agc_cli.settings import load_settings

SPEC = "sbm:nodes=600,clusters=4,degree=8,homophily=0.8,features=12,snr=2,skew=0.5,seed=3"
CPU = torch.device("cpu")


def with_splits(graph: Graph) -> Graph:
    graph.splits = {"train": torch.arange(0, 30), "test": torch.arange(30, 60)}
    return graph


def assert_same_graph(stored: Graph, graph: Graph, dtype: torch.dtype = torch.float32) -> None:
    assert torch.equal(stored.colptr, graph.colptr)
    assert torch.equal(stored.row.long(), graph.row.long())
    assert torch.equal(stored.dense_features(), graph.dense_features().to(dtype))
    assert torch.equal(stored.y, graph.y)
    assert stored.splits.keys() == graph.splits.keys()
    assert all(torch.equal(stored.splits[k], graph.splits[k]) for k in graph.splits)
    assert stored.num_classes == graph.num_classes and stored.name == graph.name


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_write_then_open_round_trips_the_in_memory_graph(tmp_path, sparse):
    graph = with_splits(tiny_graph(sparse=sparse))
    meta = store.write_graph(graph, tmp_path / "s")
    stored = store.open_store(tmp_path / "s")
    assert isinstance(stored, store.StoredGraph)
    assert_same_graph(stored, graph)
    assert stored.sparse_features == sparse
    assert stored.row.dtype == torch.int32 and stored.colptr.dtype == torch.int64
    assert meta["feature_layout"] == ("csr" if sparse else "dense")
    assert meta["labeled_nodes"] == graph.num_nodes and meta["edges"] == graph.num_edges
    on_disk = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert on_disk == meta


def test_float16_store_holds_rounded_features_and_gathers_float32(tmp_path):
    graph = tiny_graph()
    store.write_graph(graph, tmp_path / "s", dtype="float16")
    stored = store.open_store(tmp_path / "s")
    assert stored.x.dtype == torch.float16
    assert_same_graph(stored, graph, dtype=torch.float16)
    rows = stored.feature_rows(torch.tensor([3, 1, 3]))
    assert rows.dtype == torch.float32
    assert torch.equal(rows, graph.x[[3, 1, 3]].half().float())


def test_float16_refuses_features_beyond_its_range(tmp_path):
    graph = tiny_graph()
    graph.x[5, 2] = 1e6
    with pytest.raises(UsageError, match="float16"):
        store.write_graph(graph, tmp_path / "s", dtype="float16")
    assert not (tmp_path / "s").exists()


def test_row_is_int32_while_node_ids_fit_and_int64_beyond():
    assert store.row_dtype(2**31 - 1) == np.int32
    assert store.row_dtype(2**31) == np.int64


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_streaming_synthetic_writer_equals_generate(tmp_path, dtype):
    spec = synthetic.parse_synthetic(SPEC)
    meta = store.write_synthetic(spec, tmp_path / "s", dtype=dtype)
    stored = store.open_store(tmp_path / "s")
    graph = synthetic.generate(spec)
    assert_same_graph(stored, graph, dtype=getattr(torch, dtype))
    assert meta["edges"] == synthetic.describe(spec)["edges"]
    # The scratch file of edges grouped by cluster is not part of the store.
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "colptr.npy", "meta.json", "row.npy", "x.npy", "y.npy",
    ]  # fmt: skip


def test_convert_refuses_an_existing_store_without_force_and_replaces_it_with(capsys, tmp_path):
    out = tmp_path / "s"
    assert run_agc(capsys, "convert", SPEC, str(out)).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run_agc(capsys, "convert", SPEC, str(out), "--dtype", "float16")
    assert r.code == 2 and "--force" in r.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    r = run_agc(capsys, "convert", SPEC, str(out), "--dtype", "float16", "--force")
    assert r.code == 0, r.err
    assert store.open_store(out).x.dtype == torch.float16
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no partial or old folder left


def test_convert_never_replaces_a_directory_that_is_not_a_store(capsys, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = run_agc(capsys, "convert", SPEC, str(tmp_path / "mine"), "--force")
    assert r.code == 2 and "not an agc store" in r.err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_failed_conversion_leaves_neither_the_store_nor_a_partial_folder(tmp_path, monkeypatch):
    def explode(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(synthetic, "_features", explode)
    with pytest.raises(RuntimeError):
        store.write_synthetic(synthetic.parse_synthetic(SPEC), tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_convert_prints_the_store_and_stats_answers_from_meta_json(capsys, tmp_path):
    out = tmp_path / "s"
    r = run_agc(capsys, "convert", SPEC, str(out))
    assert r.code == 0, r.err
    assert "nodes: 600" in r.out and "x.npy" in r.out and "writing x.npy" in r.err
    # Without --load, stats reads only meta.json: a damaged feature file goes unnoticed.
    with open(out / "x.npy", "r+b") as fh:
        fh.truncate(1000)
    r = run_agc(capsys, "stats", str(out), "--json")
    assert r.code == 0, r.err
    dataset = json.loads(r.out)["dataset"]
    assert dataset["source"] == "store" and dataset["name"] == str(out)
    assert dataset["nodes"] == 600
    assert dataset["edges"] == synthetic.describe(synthetic.parse_synthetic(SPEC))["edges"]
    assert dataset["labeled_nodes"] == 600 and dataset["classes"] == 4


def _truncate(path: Path) -> None:
    with open(path / "x.npy", "r+b") as fh:
        fh.truncate(path.joinpath("x.npy").stat().st_size - 100)


def _remove_row(path: Path) -> None:
    (path / "row.npy").unlink()


def _flip_a_feature_byte(path: Path) -> None:
    with open(path / "x.npy", "r+b") as fh:
        fh.seek(200)
        value = fh.read(1)
        fh.seek(200)
        fh.write(bytes([value[0] ^ 0xFF]))


def _edit_meta(change):
    def edit(path: Path) -> None:
        meta = json.loads((path / "meta.json").read_text())
        change(meta)
        (path / "meta.json").write_text(json.dumps(meta))

    return edit


@pytest.mark.parametrize(
    "damage, named",
    [
        (_truncate, "x.npy: truncated"),
        (_remove_row, "row.npy: missing"),
        (_flip_a_feature_byte, "x.npy: checksum"),
        (_edit_meta(lambda m: m["files"]["x"].update(shape=[600, 13])), "x.npy: holds float32"),
        (_edit_meta(lambda m: m["files"]["y"].update(dtype="int32")), "y.npy: holds int64"),
        (_edit_meta(lambda m: m.update(nodes=599)), "colptr.npy: holds int64 [601]"),
        (_edit_meta(lambda m: m.update(edges=7)), "row.npy: holds int32"),
        (_edit_meta(lambda m: m.pop("files")), "meta.json: malformed"),
        (_edit_meta(lambda m: m.update(version=99)), "meta.json: store format version 99"),
    ],
    ids=[
        "truncated",
        "missing",
        "checksum",
        "shape",
        "dtype",
        "nodes",
        "edges",
        "no-files",
        "version",
    ],
)
def test_damaged_store_exits_3_naming_the_file(capsys, tmp_path, damage, named):
    out = tmp_path / "s"
    store.write_synthetic(synthetic.parse_synthetic(SPEC), out)
    damage(out)
    r = run_agc(capsys, "stats", str(out), "--load")
    assert r.code == 3, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0]


def test_feature_store_gathers_the_requested_rows_in_order(tmp_path, monkeypatch):
    graph = tiny_graph(nodes=300)
    store.write_graph(graph, tmp_path / "s")
    features = GraphFeatureStore(store.open_store(tmp_path / "s"))
    index = torch.tensor([299, 0, 17, 17, 5, 6, 7, 250, 1])
    assert torch.equal(features.get_tensor(TensorAttr(None, "x", index)), graph.x[index])
    assert torch.equal(features.get_tensor(TensorAttr(None, "y", index)), graph.y[index])
    # Large gathers are split over reading threads; the result is the same.
    monkeypatch.setattr(store, "_PARALLEL_ROWS", 1)
    monkeypatch.setattr(store, "_MAX_READ_BYTES", 64)  # also split long runs of rows
    index = torch.randint(0, 300, (1000,), generator=torch.Generator().manual_seed(0))
    index[:100] = torch.arange(100)
    assert torch.equal(features.get_tensor(TensorAttr(None, "x", index)), graph.x[index])
    with pytest.raises(DataError, match="node id 300"):
        features.get_tensor(TensorAttr(None, "x", torch.tensor([300])))


def test_stored_graph_pickles_as_its_path(tmp_path):
    store.write_graph(tiny_graph(nodes=2000, features=64), tmp_path / "s")
    stored = store.open_store(tmp_path / "s")
    data = pickle.dumps(stored)
    assert len(data) < 2000
    again = pickle.loads(data)
    index = torch.tensor([4, 1999, 2])
    assert torch.equal(again.feature_rows(index), stored.x[index])


def _session(graph: Graph, **overrides):
    settings = load_settings({
        "model": "dgi", "gnn_type": "sage", "hidden_channels": 8, "num_layers": 2,
        "mini_batch": True, "batch_size": 64, "fan_out": "5,3", "epochs": 1, "seed": 7,
        **overrides,
    })  # fmt: skip
    return open_session(settings, graph)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mini_batch_training_from_a_store_equals_the_in_memory_run(tmp_path, num_workers):
    graph = synthetic.generate(synthetic.parse_synthetic(SPEC))
    store.write_synthetic(synthetic.parse_synthetic(SPEC), tmp_path / "s")
    weights = []
    for source in (graph, store.open_store(tmp_path / "s")):
        s = _session(source, num_workers=num_workers)
        Trainer(s.graph, s.model, s.settings, s.device, max_steps=3).fit()
        weights.append({k: p.detach().clone() for k, p in s.model.named_parameters()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize(
    ("features", "options"),
    [(12, {}), (64, {}), (64, {"jk": "cat"})],  # first transform 16 wide: raw rows / streamed
)
def test_layerwise_inference_from_a_store_equals_the_in_memory_graph(
    tmp_path, monkeypatch, features, options
):
    spec = SPEC.replace("features=12", f"features={features}")
    graph = synthetic.generate(synthetic.parse_synthetic(spec))
    store.write_synthetic(synthetic.parse_synthetic(spec), tmp_path / "s")
    stored = store.open_store(tmp_path / "s")
    model = _session(graph, **options).model
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spilled: set[str] = set()

    def hook(stage, size):  # the per-node intermediates of a store live in scratch files
        spilled.update(p.name for p in scratch.glob("agc-infer-*/*.f32"))

    nodes = torch.tensor([5, 599, 0, 42])
    for subset in (None, nodes):
        expected = layerwise(model, graph, CPU, batch_size=100, nodes=subset)
        got = layerwise(model, stored, CPU, 100, nodes=subset, fault_hook=hook, spill=True)
        assert torch.equal(got, expected)
    assert "layer0.f32" in spilled
    assert ("transform0.f32" in spilled) == (features == 64)
    assert list(scratch.iterdir()) == []  # removed afterwards


@pytest.mark.parametrize(("available", "spills"), [(1 << 40, False), (1 << 10, True)])
def test_intermediates_spill_to_scratch_only_when_they_would_not_fit(
    tmp_path, monkeypatch, available, spills
):
    from agc_cli.engine import inference

    stored = _stored(tmp_path)
    model = _session(stored).model
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(inference, "_available", lambda: available)
    seen: set[str] = set()
    layerwise(model, stored, CPU, 100, fault_hook=lambda *_: seen.update(
        p.name for p in scratch.glob("agc-infer-*/*.f32")))  # fmt: skip
    assert bool(seen) == spills


def _stored(tmp_path):
    store.write_synthetic(synthetic.parse_synthetic(SPEC), tmp_path / "s")
    return store.open_store(tmp_path / "s")


def test_loader_batches_from_a_store_carry_the_in_memory_features(tmp_path):
    graph = tiny_graph(nodes=200)
    store.write_graph(graph, tmp_path / "s")
    stored = store.open_store(tmp_path / "s")
    batches = [
        list(make_loader(g, None, [4, 2], batch_size=50, shuffle=True, seed=1))
        for g in (graph, stored)
    ]
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_storage_disk_converts_once_into_the_cache_and_maps_it(tmp_path):
    first = load_graph(SPEC, tmp_path / "root", tmp_path / "cache", storage="disk")
    assert isinstance(first, store.StoredGraph)
    assert first.path.parent == tmp_path / "cache" / "stores"
    created = (first.path / "meta.json").stat().st_mtime_ns
    second = load_graph(SPEC, tmp_path / "root", tmp_path / "cache", storage="disk")
    assert second.path == first.path
    assert (second.path / "meta.json").stat().st_mtime_ns == created
    assert_same_graph(second, synthetic.generate(synthetic.parse_synthetic(SPEC)))


def test_a_store_path_loads_as_the_store_and_refuses_labeled_only(tmp_path):
    store.write_synthetic(synthetic.parse_synthetic(SPEC), tmp_path / "s")
    graph = load_graph(str(tmp_path / "s"), tmp_path, tmp_path / "cache")
    assert isinstance(graph, store.StoredGraph)
    with pytest.raises(UsageError, match="labeled"):
        load_graph(str(tmp_path / "s"), tmp_path, tmp_path / "cache", labeled_only=True)


def test_read_meta_rejects_a_foreign_json(tmp_path):
    (tmp_path / "meta.json").write_text('{"hello": 1}')
    with pytest.raises(DataError, match="not an agc store"):
        store.read_meta(tmp_path)
