"""Embeddings streamed to an .npy as inference produces them equal the in-memory ones; a
retry after out-of-memory starts the file over; `agc infer --stream` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_agc
from graphs import tiny_graph

from agc_cli.data import store
from agc_cli.engine.inference import EmbeddingsFile, infer, layerwise
from agc_cli.errors import UsageError
from agc_cli.models.registry import get_model_class
from agc_cli.settings import load_settings

CPU = torch.device("cpu")


def build(features: int = 8, **overrides):
    graph = tiny_graph(features=features)
    settings = load_settings({"model": "dgi", "hidden_channels": 16, "num_layers": 2,
                              **overrides})  # fmt: skip
    torch.manual_seed(0)
    net = get_model_class("dgi").from_settings(
        graph.num_features, graph.num_nodes, graph.num_classes, settings
    )
    return net.eval(), graph


@pytest.mark.parametrize(
    "options",
    [{"gnn_type": "gcn"}, {"gnn_type": "sage"}, {"gnn_type": "gcn", "jk": "cat", "num_layers": 3}],
    ids=["gcn", "sage", "jk-cat"],
)
@pytest.mark.parametrize("features", [8, 96])  # transform wider / narrower than the features
def test_streamed_layerwise_embeddings_equal_the_returned_ones(tmp_path, options, features):
    net, graph = build(features=features, **options)
    expected = layerwise(net, graph, CPU, batch_size=7)
    sink = EmbeddingsFile(tmp_path / "e.npy", graph.num_nodes)
    assert layerwise(net, graph, CPU, batch_size=7, sink=sink) is None
    sink.commit()
    got = np.load(tmp_path / "e.npy")
    assert got.dtype == np.float32 and torch.equal(torch.from_numpy(got), expected)


def test_streamed_embeddings_from_a_store_equal_the_in_memory_graphs(tmp_path):
    net, graph = build(features=96)
    store.write_graph(graph, tmp_path / "s")
    sink = EmbeddingsFile(tmp_path / "e.npy", graph.num_nodes)
    layerwise(net, store.open_store(tmp_path / "s"), CPU, 9, sink=sink, spill=True)
    sink.commit()
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "e.npy")),
                               layerwise(net, graph, CPU, 9), atol=1e-6, rtol=1e-5)  # fmt: skip


def test_float16_file_holds_the_rounded_embeddings(tmp_path):
    net, graph = build()
    sink = EmbeddingsFile(tmp_path / "e.npy", graph.num_nodes, "float16")
    layerwise(net, graph, CPU, 16, sink=sink)
    sink.commit()
    got = np.load(tmp_path / "e.npy")
    assert got.dtype == np.float16
    assert np.array_equal(got, layerwise(net, graph, CPU, 16).numpy().astype(np.float16))


def test_float16_refuses_values_beyond_its_range(tmp_path):
    sink = EmbeddingsFile(tmp_path / "e.npy", 4, "float16")
    with pytest.raises(UsageError, match="beyond float16"):
        sink.write(torch.full((4, 2), 1e6))
    sink.reset()
    assert list(tmp_path.iterdir()) == []


def test_out_of_memory_in_the_last_layer_starts_the_file_over(tmp_path):
    net, graph = build()
    failed = []

    def hook(stage, size):  # the second batch of the last layer fails once, after a write
        if stage == "layer1" and size == 20 and not failed:
            failed.append(size)
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    sink = EmbeddingsFile(tmp_path / "e.npy", graph.num_nodes)
    res = infer(net, graph, CPU, full_batch=False, allow_cpu_fallback=False, batch_size=40,
                fault_hook=hook, sink=sink)  # fmt: skip
    sink.commit()  # 60 nodes: batches of 40 and 20 (fails), then 32 and 28
    assert failed and res.batch_size == 32 and res.embeddings is None
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "e.npy")),
                       layerwise(net, graph, CPU, 32))  # fmt: skip


def test_full_batch_inference_writes_the_sink_too(tmp_path):
    net, graph = build()
    sink = EmbeddingsFile(tmp_path / "e.npy", graph.num_nodes)
    res = infer(net, graph, CPU, full_batch=True, allow_cpu_fallback=True, batch_size=7,
                sink=sink)  # fmt: skip
    sink.commit()
    assert res.mode == "full-batch (cpu)"
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "e.npy")), res.embeddings)


def test_a_sink_takes_every_node_only(tmp_path):
    net, graph = build()
    with pytest.raises(UsageError, match="every node"):
        layerwise(net, graph, CPU, 8, nodes=torch.tensor([1, 2]),
                  sink=EmbeddingsFile(tmp_path / "e.npy", 2))  # fmt: skip


def test_cli_infer_stream_writes_only_the_npy_and_clusters_out_of_core(capsys, tmp_path):
    spec = "sbm:nodes=500,clusters=4,degree=8,homophily=0.9,features=16,snr=3,seed=4"
    run = tmp_path / "run"
    r = run_agc(capsys, "train", "--dataset", spec, "--hidden-channels", "16", "--epochs", "2",
                "--run-dir", str(run), "--mini-batch", "--batch-size", "250")  # fmt: skip
    assert r.code == 0, r.err
    r = run_agc(capsys, "infer", str(run), "--stream", "--float16", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["files"] == [str(run / "embeddings.npy")] and report["dim"] == 16
    assert not (run / "embeddings.pt").exists()
    assert np.load(run / "embeddings.npy").dtype == np.float16
    r = run_agc(capsys, "cluster", str(run), "--embeddings", "embeddings.npy", "--out-of-core",
                "--runs", "1", "--json")  # fmt: skip
    assert r.code == 0, r.err
    assert json.loads(r.out)["nodes"] == 500
    assert run_agc(capsys, "infer", str(run), "--stream", "--labeled").code == 2
    assert run_agc(capsys, "infer", str(run), "--float16").code == 2
