"""Label and structure metrics against hand-computed cases, scikit-learn and networkx."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import torch
from sklearn.metrics import (
    adjusted_rand_score,
    completeness_score,
    f1_score,
    homogeneity_score,
    normalized_mutual_info_score,
)

from agc_cli.cluster import (
    cluster_accuracy,
    evaluate,
    label_metrics,
    matched_macro_f1,
    structure_metrics,
)
from agc_cli.data.graph import to_csc
from agc_cli.errors import DataError, UsageError

# Two triangles {0, 1, 2} and {3, 4, 5} joined by the edge 2-3: 7 edges, degrees 2 2 3 3 2 2.
BARBELL_EDGES = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (4, 5)]


def csc(edges: list[tuple[int, int]], num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    return to_csc(torch.tensor(edges).T, num_nodes)


def random_graph(num_nodes: int, num_edges: int, seed: int) -> nx.Graph:
    return nx.gnm_random_graph(num_nodes, num_edges, seed=seed)


def nx_communities(pred: np.ndarray, nodes: list[int]) -> list[set[int]]:
    groups: dict[int, set[int]] = {}
    for node in nodes:
        groups.setdefault(int(pred[node]), set()).add(node)
    return list(groups.values())


def brute_force_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Best accuracy over every one-to-one map from clusters to classes (or back)."""
    clusters, classes = np.unique(pred), np.unique(y)
    best = 0
    if clusters.size >= classes.size:
        for chosen in itertools.permutations(clusters, classes.size):
            best = max(
                best,
                sum(
                    int(np.sum((pred == c) & (y == k)))
                    for c, k in zip(chosen, classes, strict=True)
                ),
            )
    else:
        for chosen in itertools.permutations(classes, clusters.size):
            best = max(
                best,
                sum(
                    int(np.sum((pred == c) & (y == k)))
                    for c, k in zip(clusters, chosen, strict=True)
                ),
            )
    return best / y.size


def test_accuracy_leaves_surplus_clusters_unmatched():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    # Cluster 1 has no class left: its two nodes are wrong (majority voting would give 1.0).
    assert cluster_accuracy(y, pred) == pytest.approx(6 / 8)


@pytest.mark.parametrize("num_clusters", [3, 4, 6])
def test_accuracy_equals_brute_force_over_matchings(num_clusters):
    rng = np.random.default_rng(num_clusters)
    y = rng.integers(0, 4, size=60)
    pred = np.where(rng.random(60) < 0.6, y, rng.integers(0, num_clusters, size=60))
    assert cluster_accuracy(y, pred) == pytest.approx(brute_force_accuracy(y, pred))


def test_accuracy_is_invariant_to_cluster_ids():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y, np.array([7, 7, 3, 3, 5, 5])) == 1.0


def test_macro_f1_hand_case_with_an_unmatched_cluster():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    # Class 0: TP 2, predicted 2, true 4 -> F1 = 4 / 6. Class 1: F1 = 1.
    assert matched_macro_f1(y, pred) == pytest.approx((4 / 6 + 1) / 2)
    # The same with scikit-learn after mapping: cluster 0 -> 0, 2 -> 1, cluster 1 -> no class.
    mapped = np.array([0, 0, -1, -1, 1, 1, 1, 1])
    expected = f1_score(y, mapped, labels=[0, 1], average="macro")
    assert matched_macro_f1(y, pred) == pytest.approx(expected)


def test_macro_f1_counts_a_class_without_a_cluster_as_zero():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 1])
    # Class 0: F1 1; class 1 gets cluster 1 (TP 2, predicted 4, true 2): 4 / 6; class 2: 0.
    assert matched_macro_f1(y, pred) == pytest.approx((1 + 4 / 6 + 0) / 3)


def test_label_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 7, size=300))
    metrics = label_metrics(torch.from_numpy(pred), torch.from_numpy(y))
    assert metrics["nmi"] == pytest.approx(normalized_mutual_info_score(y, pred))
    assert metrics["ari"] == pytest.approx(adjusted_rand_score(y, pred))
    assert metrics["homogeneity"] == pytest.approx(homogeneity_score(y, pred))
    assert metrics["completeness"] == pytest.approx(completeness_score(y, pred))
    assert metrics["acc"] == pytest.approx(cluster_accuracy(y, pred))
    assert metrics["f1"] == pytest.approx(matched_macro_f1(y, pred))
    assert all(0.0 <= value <= 1.0 for value in metrics.values())


def test_label_metrics_ignore_unlabeled_nodes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=100)
    pred = np.where(rng.random(100) < 0.8, y, rng.integers(0, 3, size=100))
    unlabeled = rng.random(100) < 0.3
    y_partial = np.where(unlabeled, -1, y)
    scrambled = np.where(unlabeled, rng.integers(0, 9, size=100), pred)
    expected = label_metrics(pred[~unlabeled], y[~unlabeled])
    assert label_metrics(pred, y_partial) == pytest.approx(expected)
    assert label_metrics(scrambled, y_partial) == pytest.approx(expected)


def test_label_metrics_without_labeled_nodes_raise():
    with pytest.raises(DataError):
        label_metrics(np.zeros(4, dtype=np.int64), np.full(4, -1))


def test_barbell_by_hand():
    colptr, row = csc(BARBELL_EDGES, 6)
    metrics = structure_metrics(np.array([0, 0, 1, 2, 2, 2]), colptr, row)
    # Intra edges 1, 0, 3 of 7; volumes 4, 3, 7 of 14.
    assert metrics["modularity"] == pytest.approx(19 / 98)
    # Cut edges 0-2, 1-2, 2-3 of 7.
    assert metrics["conductance"] == pytest.approx(3 / 7)
    # cut / min(vol, 14 - vol): 2 / 4, 3 / 3, 1 / 7.
    assert metrics["mean_conductance"] == pytest.approx((1 / 2 + 1 + 1 / 7) / 3)
    halves = structure_metrics(np.array([0, 0, 0, 1, 1, 1]), colptr, row)
    assert halves["modularity"] == pytest.approx(5 / 14)
    assert halves["conductance"] == pytest.approx(1 / 7)
    assert halves["mean_conductance"] == pytest.approx(1 / 7)


@pytest.mark.parametrize("self_loops", [False, True])
def test_modularity_matches_networkx(self_loops):
    graph = random_graph(80, 300, seed=3)
    if self_loops:
        graph.add_edges_from([(5, 5), (17, 17), (40, 40)])
    pred = np.random.default_rng(3).integers(0, 5, size=80)
    colptr, row = csc(list(graph.edges), 80)
    expected = nx.community.modularity(graph, nx_communities(pred, list(graph.nodes)))
    assert structure_metrics(pred, colptr, row)["modularity"] == pytest.approx(expected)


def test_conductance_matches_networkx_per_cluster():
    graph = random_graph(60, 200, seed=4)
    pred = np.random.default_rng(4).integers(0, 4, size=60)
    colptr, row = csc(list(graph.edges), 60)
    communities = nx_communities(pred, list(graph.nodes))
    expected = np.mean([nx.conductance(graph, nodes) for nodes in communities])
    cut = sum(nx.cut_size(graph, nodes) for nodes in communities) / 2
    metrics = structure_metrics(pred, colptr, row)
    assert metrics["mean_conductance"] == pytest.approx(expected)
    assert metrics["conductance"] == pytest.approx(cut / graph.number_of_edges())


def test_chunked_equals_unchunked():
    graph = random_graph(200, 1500, seed=5)
    pred = np.random.default_rng(5).integers(0, 6, size=200)
    colptr, row = csc(list(graph.edges), 200)
    mask = np.random.default_rng(6).random(200) < 0.7
    for node_mask in (None, mask):
        whole = structure_metrics(pred, colptr, row, mask=node_mask, chunk_edges=10**9)
        for chunk_edges in (1, 7, 100):
            chunked = structure_metrics(pred, colptr, row, mask=node_mask, chunk_edges=chunk_edges)
            assert chunked == whole


def test_memory_mapped_topology(tmp_path):
    graph = random_graph(100, 400, seed=7)
    pred = np.random.default_rng(7).integers(0, 4, size=100)
    colptr, row = csc(list(graph.edges), 100)
    np.save(tmp_path / "colptr.npy", colptr.numpy())
    np.save(tmp_path / "row.npy", row.numpy())
    mapped = structure_metrics(
        pred,
        np.load(tmp_path / "colptr.npy", mmap_mode="r"),
        np.load(tmp_path / "row.npy", mmap_mode="r"),
        chunk_edges=64,
    )
    assert mapped == structure_metrics(pred, colptr, row)


def test_labeled_subgraph_counts_only_edges_inside_the_mask():
    colptr, row = csc(BARBELL_EDGES, 6)
    # Node 2 is left out: the edges 0-1, 3-4, 3-5, 4-5 remain; its prediction is irrelevant.
    pred = np.array([0, 0, -1, 1, 1, 1])
    mask = np.array([True, True, False, True, True, True])
    metrics = structure_metrics(pred, colptr, row, mask=mask)
    # Intra 1 and 3 of 4 edges; volumes 2 and 6 of 8.
    assert metrics["modularity"] == pytest.approx(1 / 4 - (2 / 8) ** 2 + 3 / 4 - (6 / 8) ** 2)
    assert metrics["conductance"] == 0.0
    assert structure_metrics(pred, colptr, row, mask=torch.tensor([0, 1, 3, 4, 5])) == metrics


def test_labeled_subgraph_matches_networkx_induced_subgraph():
    graph = random_graph(90, 400, seed=8)
    rng = np.random.default_rng(8)
    pred = rng.integers(0, 4, size=90)
    keep = np.flatnonzero(rng.random(90) < 0.6)
    colptr, row = csc(list(graph.edges), 90)
    sub = graph.subgraph(keep.tolist())
    expected = nx.community.modularity(sub, nx_communities(pred, list(sub.nodes)))
    assert structure_metrics(pred, colptr, row, mask=keep)["modularity"] == pytest.approx(expected)


def test_single_cluster_has_no_defined_mean_conductance():
    colptr, row = csc(BARBELL_EDGES, 6)
    metrics = structure_metrics(np.zeros(6, dtype=np.int64), colptr, row)
    assert metrics["modularity"] == pytest.approx(0.0)
    assert metrics["conductance"] == 0.0
    assert math.isnan(metrics["mean_conductance"])


def test_structure_metrics_reject_bad_input():
    colptr, row = csc(BARBELL_EDGES, 6)
    with pytest.raises(DataError):
        structure_metrics(np.zeros(5, dtype=np.int64), colptr, row)
    with pytest.raises(DataError):
        structure_metrics(np.array([0, 0, -1, 1, 1, 1]), colptr, row)
    with pytest.raises(DataError):
        empty = torch.zeros(4, dtype=torch.long)
        structure_metrics(np.zeros(3, dtype=np.int64), empty, torch.zeros(0, dtype=torch.long))


def test_evaluate_computes_what_the_inputs_allow():
    colptr, row = csc(BARBELL_EDGES, 6)
    pred = torch.tensor([0, 0, 0, 1, 1, 1])
    y = torch.tensor([0, 0, 0, 1, 1, -1])
    label_keys = {"acc", "nmi", "ari", "f1", "homogeneity", "completeness"}
    structure_keys = {"modularity", "conductance", "mean_conductance"}
    assert set(evaluate(pred, y)) == label_keys
    assert set(evaluate(pred, colptr=colptr, row=row)) == structure_keys
    both = evaluate(pred, y, colptr, row)
    assert set(both) == label_keys | structure_keys
    assert both["acc"] == 1.0
    assert set(evaluate(pred, torch.full((6,), -1), colptr, row)) == structure_keys
    assert evaluate(pred) == {}
    with pytest.raises(UsageError):
        evaluate(pred, colptr=colptr)


def test_evaluate_mask_restricts_label_metrics_too():
    colptr, row = csc(BARBELL_EDGES, 6)
    pred = torch.tensor([0, 0, 1, 1, 1, 1])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    mask = torch.tensor([True, True, False, True, True, True])
    metrics = evaluate(pred, y, colptr, row, mask=mask)
    assert metrics["acc"] == 1.0
    assert metrics["modularity"] == pytest.approx(
        structure_metrics(pred, colptr, row, mask)["modularity"]
    )
