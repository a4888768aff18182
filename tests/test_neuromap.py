"""Neuromap: the map equation's codelength, its flow, and training in both modes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_helpers import run_agc
from graphs import tiny_graph
from sampled_batches import sample_batch

from agc_cli.data.graph import Graph
from agc_cli.engine.session import build_model
from agc_cli.models import GraphBatch
from agc_cli.models.neuromap import codelength
from agc_cli.settings import Settings

TINY = "sbm:nodes=300,clusters=3,degree=8,homophily=0.9,features=12,snr=3,seed=2"


def entropy(rates: list[float]) -> float:
    """Shannon entropy in bits of the distribution proportional to ``rates``."""
    total = sum(rates)
    return -sum(r / total * math.log2(r / total) for r in rates if r > 0)


def two_triangles() -> Graph:
    """Triangles 0-1-2 and 3-4-5 joined by the edge 2-3 (7 edges, degrees 2 2 3 3 2 2)."""
    edge_index = torch.tensor([[0, 1, 0, 3, 4, 3, 2], [1, 2, 2, 4, 5, 5, 3]])
    return Graph.from_edge_index("triangles", edge_index, 6, torch.eye(6))


def test_codelength_of_two_triangles_matches_the_map_equation_by_hand():
    batch = GraphBatch.full(two_triangles())
    s = torch.eye(2)[[0, 0, 0, 1, 1, 1]]
    # Walker's flow: p_u = d_u / 2m with 2m = 14; one edge (both directions) between the
    # modules, so each module is exited at rate 1/14 and q = 2/14.
    q, exit_rate = 2 / 14, 1 / 14
    index = q * entropy([exit_rate, exit_rate])
    # A module's codebook: its exit plus its nodes' visits (degrees 2, 2, 3 of 14 each).
    module_rates = [exit_rate, 2 / 14, 2 / 14, 3 / 14]
    modules = 2 * sum(module_rates) * entropy(module_rates)
    assert math.isclose(float(codelength(s, batch)), index + modules, rel_tol=1e-6)


def test_one_module_codelength_is_the_entropy_of_the_visit_rates():
    graph = tiny_graph(nodes=30)
    batch = GraphBatch.full(graph)
    visits = (graph.degree().float() / graph.num_edges).tolist()
    one = torch.ones(graph.num_nodes, 1)
    assert math.isclose(float(codelength(one, batch)), entropy(visits), rel_tol=1e-6)
    # Spreading every node evenly over three modules only adds exits: never shorter.
    spread = torch.full((graph.num_nodes, 3), 1 / 3)
    assert float(codelength(spread, batch)) >= entropy(visits) - 1e-5


def test_degree_flow_is_pagerank_with_smart_teleportation_on_undirected_graphs():
    # The docstring's claim: teleporting in proportion to in-degree, the PageRank of an
    # undirected graph is d / 2m and every edge carries 1 / 2m, whatever alpha.
    graph = tiny_graph(nodes=30)
    adjacency = torch.zeros(30, 30)
    src, dst = graph.edge_index()
    adjacency[src, dst] = 1.0
    degree = adjacency.sum(1)
    transition = adjacency / degree.clamp(min=1)[:, None]
    teleport = adjacency.sum(0) / adjacency.sum()
    for alpha in (0.15, 0.5):
        p = torch.full((30,), 1 / 30)
        for _ in range(200):
            p = alpha * teleport + (1 - alpha) * transition.T @ p
        torch.testing.assert_close(p, degree / adjacency.sum())
        flow = alpha * adjacency / adjacency.sum() + (1 - alpha) * p[:, None] * transition
        torch.testing.assert_close(flow, adjacency / adjacency.sum())


def test_loss_is_lower_for_the_planted_partition_than_for_a_random_one():
    graph = tiny_graph(nodes=60, clusters=2)
    batch = GraphBatch.full(graph)
    planted = torch.eye(2)[graph.y]
    shuffled = planted[torch.randperm(60, generator=torch.Generator().manual_seed(0))]
    model = build_model(Settings(model="neuromap", hidden_channels=8, num_layers=1),
                        graph.num_features, graph.num_nodes, 2)  # fmt: skip
    losses = {}
    for name, s in [("planted", planted), ("random", shuffled)]:
        model.embed = lambda batch, s=s: s  # the loss of these assignments
        losses[name] = float(model.loss(batch).loss)
    assert losses["planted"] < losses["random"]
    assert float(codelength(planted, batch)) < float(codelength(shuffled, batch))


def test_minibatch_codelength_over_all_nodes_with_full_neighbourhoods_equals_full_batch():
    graph = tiny_graph()
    s = torch.softmax(torch.randn(graph.num_nodes, 4, generator=torch.Generator()), dim=1)
    seeds = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(1))
    batch = GraphBatch.from_sampled(sample_batch(graph, seeds, 2), graph)
    torch.testing.assert_close(codelength(s[seeds], batch), codelength(s, GraphBatch.full(graph)))


@pytest.mark.parametrize("mode", [["--full-batch"], ["--mini-batch", "--batch-size", "100",
                                                      "--fan-out", "5"]])  # fmt: skip
def test_agc_train_lowers_the_codelength_in_both_modes(capsys, tmp_path, mode):
    r = run_agc(capsys, "train", "--model", "neuromap", "--dataset", TINY, "--hidden-channels",
                "16", "--num-layers", "2", "--epochs", "15", "--lr", "0.01", "--run-dir",
                str(tmp_path / "run"), *mode)  # fmt: skip
    assert r.code == 0, r.err
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert all(math.isfinite(h["loss"]) for h in history)
    assert history[-1]["codelength"] < history[0]["codelength"]
