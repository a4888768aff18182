"""Neighbour sampler and loader: structural invariants on small synthetic graphs (CPU)."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch_geometric.loader import NodeLoader
from torch_geometric.nn.models import GraphSAGE
from torch_geometric.sampler import NodeSamplerInput

from agc_cli.data.graph import Graph
from agc_cli.errors import UsageError
from agc_cli.sampling import (
    CSCTopology,
    GraphFeatureStore,
    GraphTopologyStore,
    UniformNeighborSampler,
    build_sampler,
    make_loader,
    sample_without_replacement,
)

NUM_NODES = 80


@pytest.fixture
def graph() -> Graph:
    """Random graph with a hub (node 0, degree > 30), a leaf and isolated nodes 78, 79."""
    gen = torch.Generator().manual_seed(0)
    edges = torch.randint(0, 70, (2, 240), generator=gen)
    hub = torch.stack([torch.zeros(40, dtype=torch.long), torch.arange(30, 70)])
    leaf = torch.tensor([[70], [1]])
    edge_index = torch.cat([edges, hub, leaf], dim=1)
    x = torch.randn(NUM_NODES, 6, generator=gen)
    y = torch.randint(0, 4, (NUM_NODES,), generator=gen)
    return Graph.from_edge_index("random", edge_index, NUM_NODES, x, y)


def sampler_for(graph: Graph, fan_out: list[int], seed=0) -> UniformNeighborSampler:
    return UniformNeighborSampler(CSCTopology(graph.colptr, graph.row), fan_out, seed)


def sample(sampler: UniformNeighborSampler, seeds: list[int] | torch.Tensor):
    seeds = torch.as_tensor(seeds)
    return sampler.sample_from_nodes(NodeSamplerInput(torch.arange(seeds.numel()), seeds))


def neighbors(graph: Graph, node: int) -> set[int]:
    return set(graph.row[graph.colptr[node] : graph.colptr[node + 1]].tolist())


def test_sampled_edges_exist_and_point_from_neighbor_to_sampled_node(graph):
    out = sample(sampler_for(graph, [4, 3]), [0, 5, 9, 70, 78])
    source, target = out.node[out.row], out.node[out.col]
    assert torch.equal(graph.row[out.edge], source)
    assert torch.equal(graph.col()[out.edge], target)


def test_output_has_no_duplicate_nodes_or_edges(graph):
    out = sample(sampler_for(graph, [5, 5]), torch.arange(0, 40, 3))
    assert out.node.unique().numel() == out.node.numel()
    assert out.edge.unique().numel() == out.edge.numel()
    pairs = out.row * out.node.numel() + out.col
    assert pairs.unique().numel() == pairs.numel()


def test_seeds_come_first_and_hop_counts_add_up(graph):
    seeds = torch.tensor([3, 0, 78, 11])
    out = sample(sampler_for(graph, [3, 2]), seeds)
    assert torch.equal(out.node[: seeds.numel()], seeds)
    assert len(out.num_sampled_nodes) == 3 and len(out.num_sampled_edges) == 2
    assert out.num_sampled_nodes[0] == seeds.numel()
    assert sum(out.num_sampled_nodes) == out.node.numel()
    assert sum(out.num_sampled_edges) == out.row.numel() == out.col.numel() == out.edge.numel()
    assert out.metadata[0].tolist() == [0, 1, 2, 3] and out.metadata[1] is None


def test_hop1_count_per_seed_is_min_of_degree_and_fan_out(graph):
    seeds = torch.arange(NUM_NODES)
    fan_out = 4
    out = sample(sampler_for(graph, [fan_out]), seeds)
    per_seed = torch.bincount(out.col, minlength=NUM_NODES)
    assert torch.equal(per_seed, graph.degree().clamp(max=fan_out))
    assert graph.degree()[0] > fan_out  # the hub is really subsampled


def test_each_hop_samples_exactly_the_nodes_the_previous_hop_reached(graph):
    fan_out = [3, 2]
    out = sample(sampler_for(graph, fan_out), [0, 4, 8])
    b, n1, n2 = out.num_sampled_nodes
    e1, e2 = out.num_sampled_edges
    # Hop 1: seeds are the targets, sources lie in the seeds or the hop-1 nodes.
    assert set(out.col[:e1].tolist()) <= set(range(b))
    assert int(out.row[:e1].max()) < b + n1
    # Hop 2: targets are exactly the hop-1 nodes that have neighbours, each sampled once.
    hop1 = out.node[b : b + n1]
    targets = torch.bincount(out.col[e1:] - b, minlength=n1)
    assert torch.equal(targets, graph.degree()[hop1].clamp(max=fan_out[1]))
    assert int(out.row[e1:].max()) < b + n1 + n2
    assert e2 == int(targets.sum())


def test_minus_one_takes_all_neighbours(graph):
    seeds = [0, 1, 2, 70, 78]
    out = sample(sampler_for(graph, [-1]), seeds)
    for local, node in enumerate(seeds):
        sampled = set(out.node[out.row[out.col == local]].tolist())
        assert sampled == neighbors(graph, node)


def test_duplicate_seeds_keep_local_ids_zero_to_batch_size(graph):
    seeds = torch.tensor([0, 7, 0, 0, 7])
    out = sample(sampler_for(graph, [3, 3]), seeds)
    assert torch.equal(out.node[:5], seeds)
    e1 = out.num_sampled_edges[0]
    expected = graph.degree()[seeds].clamp(max=3)
    assert torch.equal(torch.bincount(out.col[:e1], minlength=5), expected)
    assert out.node[5:].unique().numel() == out.node.numel() - 5
    assert not set(out.node[5:].tolist()) & {0, 7}


def test_sample_without_replacement_gives_distinct_positions_or_all_of_them():
    count = torch.tensor([0, 1, 3, 5, 6, 100, 10**9])
    picks = sample_without_replacement(count, 5, torch.Generator().manual_seed(1))
    assert picks.shape == (7, 5)
    for row, c in zip(picks.tolist(), count.tolist(), strict=True):
        kept = [p for p in row if p >= 0]
        assert len(kept) == min(c, 5) == len(set(kept))
        assert all(0 <= p < c for p in kept)
    assert sorted(picks[3].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("count, k", [(50, 5), (7, 5), (9, 1)])
def test_neighbour_positions_are_uniform(count, k):
    trials = 20000
    picks = sample_without_replacement(
        torch.full((trials,), count), k, torch.Generator().manual_seed(2)
    )
    observed = torch.bincount(picks.view(-1), minlength=count).numpy()
    assert chisquare(observed).pvalue > 0.001


def test_sampled_subsets_are_uniform():
    # Every 2-subset of 5 items equally likely: checks Floyd's joint law, not only marginals.
    trials = 20000
    picks = sample_without_replacement(
        torch.full((trials,), 5), 2, torch.Generator().manual_seed(3)
    )
    low, high = picks.min(1).values, picks.max(1).values
    subsets = list(itertools.combinations(range(5), 2))
    observed = [int(((low == a) & (high == b)).sum()) for a, b in subsets]
    assert chisquare(observed).pvalue > 0.001


def test_sampler_neighbours_are_uniform_for_the_hub(graph):
    # 4000 copies of the hub as seeds: each copy samples its own neighbours.
    out = sample(sampler_for(graph, [5], seed=4), torch.zeros(4000, dtype=torch.long))
    position = out.edge - graph.colptr[0]
    observed = torch.bincount(position, minlength=int(graph.degree()[0])).numpy()
    assert chisquare(observed).pvalue > 0.001


def test_same_seed_gives_identical_samples_and_another_seed_differs(graph):
    seeds = torch.arange(0, 60, 2)
    first = sample(sampler_for(graph, [3, 3], seed=11), seeds)
    again = sample(sampler_for(graph, [3, 3], seed=11), seeds)
    other = sample(sampler_for(graph, [3, 3], seed=12), seeds)
    for field in ("node", "row", "col", "edge"):
        assert torch.equal(getattr(first, field), getattr(again, field))
    assert not torch.equal(first.edge, other.edge)


def test_generator_stream_is_reproducible(graph):
    def run(seed: int):
        sampler = sampler_for(graph, [3, 3], seed=torch.Generator().manual_seed(seed))
        return [sample(sampler, [0, 1, 2]).edge for _ in range(3)]

    assert all(torch.equal(a, b) for a, b in zip(run(5), run(5), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(run(5), run(6), strict=True))


def test_batches_do_not_depend_on_earlier_batches(graph):
    sampler = sampler_for(graph, [3, 3], seed=1)
    sample(sampler, [5, 6, 7])
    after = sample(sampler, [0, 1, 2])
    fresh = sample(sampler_for(graph, [3, 3], seed=1), [0, 1, 2])
    assert torch.equal(after.node, fresh.node) and torch.equal(after.row, fresh.row)


def test_epoch_and_generator_fn_select_the_batch_generator(graph):
    sampler = sampler_for(graph, [4], seed=1)
    epoch0 = sample(sampler, [0]).edge
    sampler.set_epoch(1)
    assert not torch.equal(sample(sampler, [0]).edge, epoch0)

    def by_first_seed(inputs: NodeSamplerInput) -> torch.Generator:
        return torch.Generator().manual_seed(int(inputs.node[0]))

    hooked = UniformNeighborSampler(
        CSCTopology(graph.colptr, graph.row), [4], generator_fn=by_first_seed
    )
    assert torch.equal(sample(hooked, [0]).edge, sample(hooked, [0]).edge)


def test_invalid_settings_raise_usage_errors(graph):
    topology = CSCTopology(graph.colptr, graph.row)
    with pytest.raises(UsageError, match="fan_out"):
        UniformNeighborSampler(topology, [10, -2])
    with pytest.raises(UsageError, match="fan_out"):
        UniformNeighborSampler(topology, 10)
    with pytest.raises(UsageError, match="not both"):
        UniformNeighborSampler(topology, [2], seed=1, generator_fn=lambda inputs: None)
    with pytest.raises(UsageError, match="pyg-lib"):
        build_sampler("pyg", graph, [2])
    with pytest.raises(UsageError, match="sampler"):
        build_sampler("fast", graph, [2])
    with pytest.raises(UsageError, match="input_nodes"):
        make_loader(graph, torch.tensor([0, NUM_NODES]), [2], 4)


def test_sampler_pickles_without_its_lookup_table_and_file_backed_topology_as_paths(
    graph, tmp_path
):
    np.save(tmp_path / "colptr.npy", graph.colptr.numpy())
    np.save(tmp_path / "row.npy", graph.row.numpy())
    topology = CSCTopology.from_npy(tmp_path / "colptr.npy", tmp_path / "row.npy")
    sampler = UniformNeighborSampler(topology, [3, 3], seed=2)
    before = sample(sampler, [0, 1])
    state = pickle.dumps(sampler)
    assert len(state) < 2000  # neither the topology nor the N-sized table travels
    restored = pickle.loads(state)
    after = sample(restored, [0, 1])
    assert torch.equal(before.node, after.node) and torch.equal(before.edge, after.edge)


def test_loader_batches_hold_features_labels_and_local_edges(graph):
    loader = make_loader(graph, torch.arange(50), [4, 3], batch_size=16, shuffle=True, seed=3)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    seen = torch.cat([b.n_id[: b.batch_size] for b in batches])
    assert torch.equal(seen.sort().values, torch.arange(50))
    for batch in batches:
        assert torch.equal(batch.x, graph.x[batch.n_id])
        assert torch.equal(batch.y, graph.y[batch.n_id])
        assert batch.x.size(0) == batch.num_nodes == sum(batch.num_sampled_nodes)
        assert batch.edge_index.size(1) == sum(batch.num_sampled_edges)
        assert int(batch.edge_index.max()) < batch.num_nodes
        source, target = batch.n_id[batch.edge_index]
        assert torch.equal(graph.row[batch.e_id], source)
        assert torch.equal(graph.col()[batch.e_id], target)
        assert batch.input_id.numel() == batch.batch_size


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loader_keeps_sparse_feature_rows_sparse(graph, num_workers):
    graph.x = (graph.x > 1.0).float().to_sparse_csr()
    loader = make_loader(graph, None, [3], batch_size=8, seed=0, num_workers=num_workers)
    batch = next(iter(loader))
    assert batch.x.layout == torch.sparse_csr
    assert batch.x.values().numel() == int((graph.x.to_dense()[batch.n_id] != 0).sum())
    assert torch.equal(batch.x.to_dense(), graph.x.to_dense()[batch.n_id])


def test_loader_with_workers_and_memory_mapped_topology_matches_in_process(graph, tmp_path):
    np.save(tmp_path / "colptr.npy", graph.colptr.numpy())
    np.save(tmp_path / "row.npy", graph.row.numpy())
    topology = CSCTopology.from_npy(tmp_path / "colptr.npy", tmp_path / "row.npy")
    stores = (GraphFeatureStore(graph), GraphTopologyStore(topology))
    mapped = make_loader(stores, None, [3, 2], batch_size=20, shuffle=True, num_workers=2, seed=7)
    assert mapped.node_sampler.topology.file_backed
    in_process = make_loader(graph, None, [3, 2], batch_size=20, shuffle=True, seed=7)
    for loader in (mapped, in_process):
        loader.set_epoch(2)
    for a, b in zip(mapped, in_process, strict=True):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.x, b.x)


def test_epoch_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch(graph):
    loader = make_loader(graph, None, [3, 2], batch_size=16, shuffle=True, seed=5)
    loader.set_epoch(1)
    epoch1 = list(loader)
    loader.set_epoch(0)
    epoch0 = list(loader)
    assert not torch.equal(epoch0[0].n_id[:16], epoch1[0].n_id[:16])
    loader.set_epoch(1, start_batch=2)
    resumed = list(loader)
    assert len(resumed) == len(epoch1) - 2
    for a, b in zip(resumed, epoch1[2:], strict=True):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)


def test_generator_stream_is_refused_in_worker_processes(graph):
    sampler = sampler_for(graph, [2], seed=torch.Generator().manual_seed(0))
    stores = (GraphFeatureStore(graph), GraphTopologyStore(sampler.topology))
    loader = NodeLoader(stores, sampler, input_nodes=torch.arange(8), batch_size=4, num_workers=1)
    with pytest.raises(UsageError, match="num_workers=0"):
        next(iter(loader))


def test_trim_to_layer_matches_untrimmed_graphsage_on_seed_nodes(graph):
    torch.manual_seed(0)
    model = GraphSAGE(graph.num_features, 16, num_layers=2).eval()
    batch = next(iter(make_loader(graph, None, [5, 4], batch_size=12, shuffle=True, seed=1)))
    full = model(batch.x, batch.edge_index)
    trimmed = model(
        batch.x,
        batch.edge_index,
        num_sampled_nodes_per_hop=batch.num_sampled_nodes,
        num_sampled_edges_per_hop=batch.num_sampled_edges,
    )
    assert trimmed.size(0) < full.size(0)
    torch.testing.assert_close(trimmed[: batch.batch_size], full[: batch.batch_size])


def test_graph_store_csc_round_trips(graph):
    row, colptr, perm = GraphTopologyStore(CSCTopology(graph.colptr, graph.row)).csc()
    assert torch.equal(row, graph.row) and torch.equal(colptr, graph.colptr) and perm is None
