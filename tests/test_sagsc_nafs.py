"""SAGSC and NAFS: training-free methods against dense references on tiny graphs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_agc
from graphs import tiny_graph

from agc_cli.data.graph import Graph
from agc_cli.engine.inference import layerwise
from agc_cli.errors import UsageError
from agc_cli.models.batch import GraphBatch
from agc_cli.models.nafs import NAFS, propagate_normalised, stationary_direction
from agc_cli.models.sagsc import SAGSC, quadratic_feature_map
from agc_cli.settings import Settings

CPU = torch.device("cpu")
TINY = "sbm:nodes=200,clusters=3,degree=8,homophily=0.9,features=12,snr=3,seed=2"


def dense_features(graph: Graph) -> torch.Tensor:
    return graph.x.to_dense() if graph.sparse_features else graph.x


def self_looped_adjacency(graph: Graph) -> torch.Tensor:
    """``Ã = A + I`` as a dense ``[n, n]`` matrix (row = target)."""
    src, dst = graph.edge_index()
    a = torch.zeros(graph.num_nodes, graph.num_nodes)
    a[dst, src] = 1.0
    return a + torch.eye(graph.num_nodes)


def operator(graph: Graph, r: float) -> torch.Tensor:
    """``D̃^(r-1) Ã D̃^(-r)``."""
    a = self_looped_adjacency(graph)
    d = a.sum(1)
    return d.pow(r - 1)[:, None] * a * d.pow(-r)[None, :]


def full(model, graph: Graph) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().embed(GraphBatch.full(graph, CPU))


def path_of_four() -> Graph:
    """0 - 1 - 2 - 3 with two features per node."""
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    return Graph.from_edge_index("path", edge_index, 4, x, torch.tensor([0, 0, 1, 1]))


def test_quadratic_feature_map_realises_the_kernel():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(5, 4, generator=g), torch.randn(6, 4, generator=g)
    phi_u, phi_v = quadratic_feature_map(u, 0.7), quadratic_feature_map(v, 0.7)
    assert phi_u.shape == (5, (4 + 1) * (4 + 2) // 2)
    torch.testing.assert_close(phi_u @ phi_v.T, (u @ v.T + 0.7).square())


def test_sagsc_embedding_equals_the_spectral_step_on_the_dense_affinity():
    graph = tiny_graph(nodes=60, clusters=3)
    k, p, bias = 3, 2, 2**-0.5
    model = SAGSC(graph.num_nodes, k, num_layers=p, bias=bias, iterations=200)
    a = operator(graph, 0.5)
    h = torch.linalg.matrix_power(a, p) @ F.normalize(dense_features(graph), dim=1)
    u = torch.linalg.svd(h.double(), full_matrices=False).U[:, :k]
    m = (u @ u.T + bias).square()  # the kernelised self-expression, formed densely here
    d = m.sum(1).rsqrt()
    values, vectors = torch.linalg.eigh(d[:, None] * m * d[None, :])
    expected = vectors[:, values.argsort(descending=True)[1 : k + 1]]
    got = full(model, graph).double()
    assert got.shape == (graph.num_nodes, k)
    # Compare the spanned subspaces (vectors are defined up to sign and rotation).
    torch.testing.assert_close(got @ got.T, expected @ expected.T, atol=1e-3, rtol=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_sagsc_layerwise_inference_equals_full_batch(sparse):
    graph = tiny_graph(sparse=sparse)
    model = SAGSC(graph.num_nodes, 3, num_layers=3, bias=2**-0.5, iterations=30)
    expected = full(model, graph)
    torch.testing.assert_close(layerwise(model, graph, CPU, batch_size=7), expected,
                               atol=1e-4, rtol=1e-3)  # fmt: skip
    assert torch.equal(full(model, graph), expected)  # seeded: the same embedding twice


def test_sagsc_refuses_to_embed_a_subset_of_nodes():
    graph = tiny_graph()
    model = SAGSC(graph.num_nodes, 3, num_layers=2, bias=0.5, iterations=5).eval()
    with pytest.raises(UsageError, match="whole graph"):
        layerwise(model, graph, CPU, batch_size=16, nodes=torch.tensor([0, 5, 9]))


@pytest.mark.parametrize("r", [0.0, 0.3, 0.5, 1.0])
def test_nafs_operator_matches_the_dense_normalisation(r):
    graph = tiny_graph()
    x = dense_features(graph)
    block = GraphBatch.full(graph).block(0, 1)
    torch.testing.assert_close(propagate_normalised(x, block, r), operator(graph, r) @ x)


def test_features_at_the_stationary_state_are_a_fixed_point_with_uniform_weights():
    # X_i = d̃_i^r c is the stationary state itself: every hop is X, every distance zero, so
    # the weights are uniform (1 / (K + 1)) and the embedding is X.
    graph, r = path_of_four(), 0.3
    degree = graph.degree().float()
    c = torch.tensor([2.0, -1.0])
    x = (degree + 1).pow(r)[:, None] * c[None, :]
    torch.testing.assert_close(stationary_direction(x, degree, r), c)
    at_rest = Graph.from_edge_index("rest", graph.edge_index(), 4, x, graph.y)
    torch.testing.assert_close(full(NAFS(5, [r]), at_rest), x)


def test_nafs_embedding_is_the_hand_computed_weighted_sum_on_four_nodes():
    graph, hops = path_of_four(), 2
    x = graph.x
    d = torch.tensor([2.0, 3.0, 3.0, 2.0])  # degrees with the self-loop
    expected = []
    for r in (0.5, 0.0):
        a = operator(graph, r)
        # Stationary state: [Â^∞]_ij = d_i^r d_j^(1-r) / Σ d (= 10 here).
        limit = torch.outer(d.pow(r), d.pow(1 - r)) / 10 @ x
        steps = [torch.linalg.matrix_power(a, k) @ x for k in range(hops + 1)]
        distance = torch.stack([(s - limit).norm(dim=1) for s in steps], dim=1)
        weights = distance.exp() / distance.exp().sum(1, keepdim=True)
        expected.append(sum(weights[:, k : k + 1] * steps[k] for k in range(hops + 1)))
    got = full(NAFS(hops, [0.5, 0.0], "concat"), graph)
    torch.testing.assert_close(got, torch.cat(expected, dim=1))
    torch.testing.assert_close(full(NAFS(hops, [0.5, 0.0], "mean"), graph),
                               (expected[0] + expected[1]) / 2)  # fmt: skip
    torch.testing.assert_close(full(NAFS(hops, [0.5, 0.0], "max"), graph),
                               torch.maximum(*expected))  # fmt: skip


def test_nafs_sparse_and_dense_features_give_the_same_embedding():
    sparse = tiny_graph(sparse=True)
    dense = Graph.from_edge_index("dense", sparse.edge_index(), 60, sparse.x.to_dense(), sparse.y)
    torch.testing.assert_close(full(NAFS(4, [0.0, 0.5]), sparse), full(NAFS(4, [0.0, 0.5]), dense))


def test_nafs_refuses_layerwise_inference():
    graph = tiny_graph()
    with pytest.raises(UsageError, match="full-batch"):
        layerwise(NAFS(3, [0.5]).eval(), graph, CPU, batch_size=16)


def test_models_build_from_settings():
    settings = Settings(num_layers=4, bias=0.25, subspace_iterations=9, seed=2, r_list=[0.2],
                        ensemble="mean")  # fmt: skip
    sagsc = SAGSC.from_settings(8, 60, 3, settings)
    assert (sagsc.n_clusters, sagsc.bias, sagsc.iterations, sagsc.seed) == (3, 0.25, 9, 2)
    assert sagsc.encoder.num_layers == 4
    nafs = NAFS.from_settings(8, 60, 3, settings)
    assert (nafs.encoder.num_layers, nafs.encoder.r_list, nafs.encoder.ensemble) == (
        4, [0.2], "mean")  # fmt: skip
    with pytest.raises(UsageError, match="n_clusters"):
        SAGSC.from_settings(8, 60, None, settings)


@pytest.mark.parametrize("model", ["sagsc", "nafs"])
def test_agc_run_embeds_and_clusters_without_training(capsys, tmp_path, model):
    r = run_agc(capsys, "run", "--model", model, "--dataset", TINY, "--num-layers", "3",
                "--runs", "1", "--run-dir", str(tmp_path / "run"), "--json")  # fmt: skip
    assert r.code == 0, r.err
    assert "no training needed" in r.err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    nmi = metrics["nmi"] if "nmi" in metrics else metrics["mean"]["nmi"]
    assert math.isfinite(nmi) and nmi > 0.5  # three well-separated planted clusters


def test_agc_models_lists_both_as_non_parametric(capsys):
    r = run_agc(capsys, "models", "--json")
    assert r.code == 0, r.err
    kinds = {m["name"]: m["kind"] for m in json.loads(r.out)["models"]}
    assert kinds["sagsc"] == kinds["nafs"] == "non-parametric"
