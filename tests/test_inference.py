"""Inference: layer-wise equals full-batch, subsets, the out-of-memory fallback chain."""

from __future__ import annotations

import pytest
import torch
from graphs import tiny_graph

from agc_cli.engine.inference import _relabel, infer, is_oom, layerwise
from agc_cli.models.batch import Block, GraphBatch
from agc_cli.models.registry import get_model_class
from agc_cli.settings import load_settings

CPU = torch.device("cpu")


def build(model: str = "dgi", sparse: bool = False, features: int = 8, **overrides):
    graph = tiny_graph(sparse=sparse, features=features)
    settings = load_settings({"model": model, "hidden_channels": 16, "num_layers": 2,
                              **overrides})  # fmt: skip
    torch.manual_seed(0)
    cls = get_model_class(model)
    net = cls.from_settings(graph.num_features, graph.num_nodes, graph.num_classes, settings)
    return net.eval(), graph


def full(net, graph):
    with torch.no_grad():
        return net.embed(GraphBatch.full(graph, CPU))


@pytest.mark.parametrize(
    "options",
    [
        {"gnn_type": "gcn"},
        {"gnn_type": "sage"},
        {"gnn_type": "gin"},
        {"gnn_type": "gat", "heads": 2},
        {"gnn_type": "gcn", "jk": "cat", "num_layers": 3},
        {"gnn_type": "sage", "jk": "max", "residual": False, "norm": "layer"},
        {"gnn_type": "gcn", "residual": True},
    ],
)
@pytest.mark.parametrize("features", [8, 96])  # transform wider / narrower than the features
def test_layerwise_inference_equals_full_batch(options, features):
    net, graph = build(features=features, **options)
    expected = full(net, graph)
    got = layerwise(net, graph, CPU, batch_size=7)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("features", [8, 96])
def test_layerwise_with_sparse_features_equals_full_batch(features):
    net, graph = build(sparse=True, features=features)
    torch.testing.assert_close(layerwise(net, graph, CPU, 11), full(net, graph), atol=1e-5,
                               rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize("nodes", [None, torch.tensor([17, 3, 42, 3])])
def test_narrow_first_transform_reads_each_needed_feature_row_once_in_order(nodes):
    net, graph = build(features=96)  # GCN transform: 16 columns < 96 features
    reads = []
    original = graph.feature_rows

    def counting(index):
        reads.append(index.clone())
        return original(index)

    graph.feature_rows = counting
    got = layerwise(net, graph, CPU, batch_size=7, nodes=nodes)
    rows = torch.cat(reads)
    assert torch.equal(rows, rows.unique())  # ascending, no row twice
    expected = full(net, graph)
    torch.testing.assert_close(got, expected if nodes is None else expected[nodes], atol=1e-5,
                               rtol=1e-4)  # fmt: skip
    if nodes is None:
        assert rows.numel() == graph.num_nodes


def test_wide_first_transform_gathers_raw_rows_per_batch_for_a_subset():
    net, graph = build(features=8)  # transform 16 columns >= 8 features: raw rows per batch
    reads = []
    original = graph.feature_rows
    graph.feature_rows = lambda index: reads.append(index.numel()) or original(index)
    layerwise(net, graph, CPU, batch_size=7, nodes=torch.arange(graph.num_nodes))
    assert sum(reads) > graph.num_nodes  # sources are read once per batch they neighbour


@pytest.mark.parametrize(
    "options",
    [
        {"gnn_type": "gcn"},
        {"gnn_type": "sage", "norm": "batch"},
        {"gnn_type": "gin", "residual": True},
        {"gnn_type": "gcn", "jk": "cat", "num_layers": 3, "residual": True},
    ],
)
@pytest.mark.parametrize("features", [8, 96])
def test_every_node_tables_read_features_once_in_order_and_equal_the_gathered_path(
    options, features
):
    net, graph = build(features=features, **options)
    assert net.encoder.propagates_from_tables
    reads = []
    original = graph.feature_rows

    def counting(index):
        reads.append(index.clone())
        return original(index)

    graph.feature_rows = counting
    tables = layerwise(net, graph, CPU, batch_size=7)  # every node: whole per-node tables
    assert torch.equal(torch.cat(reads), torch.arange(graph.num_nodes))
    gathered = layerwise(net, graph, CPU, batch_size=7, nodes=torch.arange(graph.num_nodes))
    torch.testing.assert_close(tables, gathered, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tables, full(net, graph), atol=1e-5, rtol=1e-4)


def test_attention_encoders_keep_the_gathered_path():
    net, _ = build(gnn_type="gat", heads=2)
    assert not net.encoder.propagates_from_tables


def test_layerwise_subset_matches_full_rows_in_callers_order():
    net, graph = build()
    nodes = torch.tensor([17, 3, 42, 3])
    got = layerwise(net, graph, CPU, batch_size=5, nodes=nodes)
    torch.testing.assert_close(got, full(net, graph)[nodes], atol=1e-5, rtol=1e-4)


def test_sampled_inference_runs_and_is_deterministic():
    net, graph = build()
    a = layerwise(net, graph, CPU, 16, fan_out=2, seed=3)
    b = layerwise(net, graph, CPU, 16, fan_out=2, seed=3)
    assert torch.equal(a, b) and a.shape == (graph.num_nodes, 16)


def oom(*_args):
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_injected_oom_walks_the_chain_and_halves_the_batch():
    net, graph = build()
    calls = []

    def hook(stage, size):
        calls.append((stage, size))
        if stage == "full" or size > 32:
            oom()

    lines = []
    res = infer(net, graph, CPU, full_batch=True, allow_cpu_fallback=True, batch_size=128,
                report=lines.append, fault_hook=hook)  # fmt: skip
    assert res.mode.startswith("layer-wise mini-batch")
    assert res.batch_size == 32  # 128 -> 64 -> 32 (the floor)
    assert any("full-batch inference on cpu ran out of memory" in s for s in lines)
    assert any("retrying with 64" in s for s in lines) and any(
        "retrying with 32" in s for s in lines
    )
    torch.testing.assert_close(res.embeddings, full(net, graph), atol=1e-5, rtol=1e-4)


def test_full_batch_used_when_it_fits():
    net, graph = build()
    res = infer(net, graph, CPU, full_batch=True, allow_cpu_fallback=True, batch_size=32)
    assert res.mode == "full-batch (cpu)" and not res.events


def test_oom_at_the_floor_is_reported():
    net, graph = build()

    def hook(stage, size):
        oom()

    with pytest.raises(Exception, match="out of memory even with batch size 32"):
        infer(net, graph, CPU, full_batch=False, allow_cpu_fallback=False, batch_size=64,
              fault_hook=hook)  # fmt: skip


def test_non_oom_errors_propagate():
    net, graph = build()

    def hook(stage, size):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        infer(net, graph, CPU, full_batch=True, allow_cpu_fallback=True, batch_size=8,
              fault_hook=hook)  # fmt: skip


def test_is_oom_recognises_cuda_and_host_messages():
    assert is_oom(RuntimeError("CUDA out of memory"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                               "can't allocate memory"))  # fmt: skip
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("shape mismatch"))


@pytest.mark.parametrize("seed", range(5))
def test_relabel_puts_destinations_first_then_every_other_source_once_in_id_order(seed):
    g = torch.Generator().manual_seed(seed)
    n = 500
    dst = torch.randperm(n, generator=g)[:60]
    src = torch.randint(0, n, (900,), generator=g)  # repeats, and some destinations
    position = torch.full((n,), -1, dtype=torch.long)
    local = _relabel(position, dst, src)
    extra = sorted(set(src.tolist()) - set(dst.tolist()))
    assert torch.equal(local, torch.cat([dst, torch.tensor(extra, dtype=torch.long)]))
    assert torch.equal(position[local], torch.arange(local.numel()))
    untouched = torch.ones(n, dtype=torch.bool)
    untouched[local] = False
    assert bool((position[untouched] == -1).all())


@pytest.mark.parametrize("offset", [0, 5])
def test_gcn_adjacency_of_grouped_edges_equals_the_sorted_construction(offset):
    # Grouped targets take the in-place self-loop construction; shuffled ones the concatenate
    # and sort: both must give the same matrix, loops on the destinations' own columns.
    g = torch.Generator().manual_seed(0)
    num_dst, num_src, edges = 6, 20, 30
    dst = torch.randint(0, num_dst, (edges,), generator=g).sort().values
    src = torch.randint(0, num_src, (edges,), generator=g)
    degree = torch.randint(1, 9, (num_src,), generator=g).float()
    counts = torch.bincount(dst, minlength=num_dst) + torch.randint(0, 2, (num_dst,), generator=g)
    grouped = Block(torch.stack([src, dst]), num_dst, degree, counts, dst_offset=offset)
    perm = torch.randperm(edges, generator=g)
    shuffled = Block(torch.stack([src[perm], dst[perm]]), num_dst, degree, counts,
                     dst_offset=offset)  # fmt: skip
    a, b = grouped.adjacency("gcn_self").to_dense(), shuffled.adjacency("gcn_self").to_dense()
    torch.testing.assert_close(a, b)
    diagonal = (torch.arange(num_dst), torch.arange(num_dst) + offset)
    loops, plain = a[diagonal], grouped.adjacency("gcn").to_dense()[diagonal]
    torch.testing.assert_close(loops - plain, 1 / (degree[offset : offset + num_dst] + 1))
