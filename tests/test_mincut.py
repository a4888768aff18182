"""MinCut: the cut and orthogonality terms, and training in both modes."""

from __future__ import annotations

import math

import torch
from sampled_batches import tiny_graph

from agc_cli.engine.session import build_model
from agc_cli.models import GraphBatch
from agc_cli.models.mincut import cut_ratio, orthogonality
from agc_cli.settings import Settings


def test_orthogonality_is_zero_for_balanced_hard_assignments_only():
    balanced = torch.eye(3).repeat(4, 1)  # 12 nodes, 4 per cluster
    assert float(orthogonality(balanced)) < 1e-6
    unbalanced = torch.eye(3)[[0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2]]
    assert float(orthogonality(unbalanced)) > 0.1
    uniform = torch.full((12, 3), 1 / 3)  # every node in every cluster: the collapse
    assert math.isclose(
        float(orthogonality(uniform)), math.sqrt(2 - 2 / math.sqrt(3)), rel_tol=1e-5
    )


def test_cut_ratio_is_one_when_no_edge_leaves_a_cluster():
    # Two triangles; hard assignments along them keep every edge inside a cluster.
    adjacency = torch.zeros(6, 6)
    for a, b in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
        adjacency[a, b] = adjacency[b, a] = 1
    s = torch.eye(2)[[0, 0, 0, 1, 1, 1]]
    degree = adjacency.sum(1)
    assert float(cut_ratio(s, adjacency @ s, degree)) == 1.0
    mixed = torch.eye(2)[[0, 1, 0, 1, 0, 1]]
    assert float(cut_ratio(mixed, adjacency @ mixed, degree)) < 1.0


def test_mincut_trains_full_batch_and_its_embedding_is_a_distribution():
    graph = tiny_graph(sparse=True)
    torch.manual_seed(0)
    model = build_model(Settings(model="mincut", hidden_channels=16, num_layers=2),
                        graph.num_features, graph.num_nodes, graph.num_classes)  # fmt: skip
    batch = GraphBatch.full(graph)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        optimizer.zero_grad()
        out = model.loss(batch)
        first = first if first is not None else out.loss.item()
        out.loss.backward()
        optimizer.step()
    assert float(model.loss(batch).loss) < first
    s = model.eval().embed(batch)
    torch.testing.assert_close(s.sum(dim=1), torch.ones(graph.num_nodes))
