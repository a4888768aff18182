"""Random walks: steps follow edges, isolated nodes stay, determinism, node2vec bias."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from agc_cli.data.graph import Graph
from agc_cli.errors import UsageError
from agc_cli.sampling import random_walk

NUM_NODES = 40


@pytest.fixture
def graph() -> Graph:
    """Random graph on nodes 0..34 plus a triangle 35-36-37; nodes 38, 39 are isolated."""
    gen = torch.Generator().manual_seed(0)
    edges = torch.randint(0, 35, (2, 120), generator=gen)
    triangle = torch.tensor([[35, 36, 37], [36, 37, 35]])
    edge_index = torch.cat([edges, triangle], dim=1)
    return Graph.from_edge_index("walks", edge_index, NUM_NODES, torch.zeros(NUM_NODES, 1))


def edge_set(graph: Graph) -> set[tuple[int, int]]:
    return set(zip(graph.row.tolist(), graph.col().tolist(), strict=True))


def walk(graph: Graph, start: torch.Tensor, length: int, seed: int = 0, **kwargs) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return random_walk(graph.colptr, graph.row, start, length, generator, **kwargs)


def test_walk_shape_starts_at_start_and_every_step_follows_an_edge(graph):
    start = torch.arange(38).repeat(5)
    walks = walk(graph, start, 6)
    assert walks.shape == (start.numel(), 7) and walks.dtype == torch.long
    assert torch.equal(walks[:, 0], start)
    edges = edge_set(graph)
    steps = zip(walks[:, :-1].reshape(-1).tolist(), walks[:, 1:].reshape(-1).tolist(), strict=True)
    assert all((nxt, cur) in edges for cur, nxt in steps)


def test_isolated_nodes_stay_in_place(graph):
    walks = walk(graph, torch.tensor([38, 39, 38]), 4)
    assert torch.equal(walks, torch.tensor([[38] * 5, [39] * 5, [38] * 5]))


def test_zero_length_walk_is_the_start(graph):
    assert torch.equal(walk(graph, torch.tensor([1, 2]), 0), torch.tensor([[1], [2]]))


def test_same_generator_seed_gives_identical_walks_and_another_differs(graph):
    start = torch.arange(35)
    assert torch.equal(walk(graph, start, 5, seed=1), walk(graph, start, 5, seed=1))
    assert not torch.equal(walk(graph, start, 5, seed=1), walk(graph, start, 5, seed=2))


def test_first_step_is_uniform_over_neighbours(graph):
    node = int(graph.degree()[:35].argmax())
    walks = walk(graph, torch.full((6000,), node), 1, seed=3)
    neighbours = graph.row[graph.colptr[node] : graph.colptr[node + 1]]
    observed = [int((walks[:, 1] == n).sum()) for n in neighbours.tolist()]
    assert sum(observed) == 6000
    assert chisquare(observed).pvalue > 0.001


def test_large_p_never_returns_to_the_previous_node(graph):
    # In the triangle every node has another neighbour, so a walk need never turn back.
    walks = walk(graph, torch.tensor([35, 36, 37] * 20), 8, p=1e6)
    assert (walks[:, 2:] != walks[:, :-2]).all()


def test_large_q_stays_next_to_the_previous_node(graph):
    walks = walk(graph, torch.arange(35).repeat(4), 6, q=1e6)
    edges = edge_set(graph)
    for before, after in zip(walks[:, :-2].reshape(-1), walks[:, 2:].reshape(-1), strict=True):
        before, after = int(before), int(after)
        assert after == before or (after, before) in edges


def test_second_order_step_follows_node2vec_weights():
    # a=0 - b=1, b - c=2, b - d=3, c - a. After a -> b: back to a weighs 1/p, c (also next to a)
    # weighs 1, d weighs 1/q.
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 2, 3, 0]])
    square = Graph.from_edge_index("kite", edge_index, 4, torch.zeros(4, 1))
    walks = walk(square, torch.zeros(30000, dtype=torch.long), 2, seed=4, p=0.5, q=2.0)
    second = walks[walks[:, 1] == 1, 2]
    observed = [int((second == node).sum()) for node in (0, 2, 3)]
    expected = [second.numel() * w / 3.5 for w in (2.0, 1.0, 0.5)]
    assert sum(observed) == second.numel()
    assert chisquare(observed, expected).pvalue > 0.001


def test_invalid_walk_settings_raise_usage_errors(graph):
    with pytest.raises(UsageError, match="walk_length"):
        walk(graph, torch.tensor([0]), -1)
    with pytest.raises(UsageError, match="p and q"):
        walk(graph, torch.tensor([0]), 2, q=0.0)
