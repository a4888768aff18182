"""Training-free methods: SGC, SSGC, S2CAG and M-S2CAG against dense references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from graphs import tiny_graph
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from agc_cli.data.graph import Graph
from agc_cli.engine.inference import layerwise
from agc_cli.errors import UsageError
from agc_cli.models.batch import GraphBatch
from agc_cli.models.propagation import SGC, SSGC
from agc_cli.models.s2cag import MS2CAG, S2CAG, nsr_weights
from agc_cli.settings import Settings

CPU = torch.device("cpu")


def dense_features(graph: Graph) -> torch.Tensor:
    return graph.x.to_dense() if graph.sparse_features else graph.x


def dense_adjacency(graph: Graph) -> torch.Tensor:
    """``A + I`` as a dense ``[n, n]`` matrix (row = target)."""
    src, dst = graph.edge_index()
    a = torch.zeros(graph.num_nodes, graph.num_nodes)
    a[dst, src] = 1.0
    return a + torch.eye(graph.num_nodes)


def gcn_matrix(graph: Graph) -> torch.Tensor:
    """``D̃^-1/2 (A + I) D̃^-1/2``."""
    a = dense_adjacency(graph)
    scale = a.sum(1).rsqrt()
    return scale[:, None] * a * scale[None, :]


def random_walk_matrix(graph: Graph) -> torch.Tensor:
    """``D̃^-1 (A + I)``."""
    a = dense_adjacency(graph)
    return a / a.sum(1, keepdim=True)


def full(model, graph: Graph) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().embed(GraphBatch.full(graph, CPU))


def two_planted_clusters(nodes: int = 80, seed: int = 0) -> Graph:
    """Two equal communities: dense inside, a few edges across, weakly informative features."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(nodes) >= nodes // 2).long()
    pairs = torch.combinations(torch.arange(nodes), 2).T
    same = y[pairs[0]] == y[pairs[1]]
    p = torch.where(same, torch.tensor(0.25), torch.tensor(0.01))
    keep = torch.rand(pairs.shape[1], generator=g) < p
    centers = torch.rand(2, 16, generator=g)
    x = (centers[y] + 0.8 * torch.rand(nodes, 16, generator=g)).clamp(min=0)
    return Graph.from_edge_index("planted", pairs[:, keep], nodes, x, y)


def s2cag_models(graph: Graph, layers: int = 3) -> list[S2CAG]:
    options = {"num_layers": layers, "alpha": 1.2, "iterations": 60, "seed": 0}
    k = graph.num_classes
    return [
        S2CAG(graph.num_nodes, k, **options),
        MS2CAG(graph.num_nodes, k, **options, gamma=1.0),
    ]


@pytest.mark.parametrize("sparse", [False, True])
def test_sgc_embedding_is_the_kth_power_of_the_gcn_matrix(sparse):
    graph = tiny_graph(sparse=sparse)
    expected = torch.linalg.matrix_power(gcn_matrix(graph), 3) @ dense_features(graph)
    torch.testing.assert_close(full(SGC(3), graph), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("sparse", [False, True])
def test_ssgc_embedding_matches_dense_markov_diffusion(sparse):
    graph = tiny_graph(sparse=sparse)
    x, a_hat, k, alpha = dense_features(graph), gcn_matrix(graph), 4, 0.1
    terms = [
        (1 - alpha) * torch.linalg.matrix_power(a_hat, i) @ x + alpha * x for i in range(1, k + 1)
    ]
    expected = torch.stack(terms).mean(0)
    torch.testing.assert_close(full(SSGC(k, alpha), graph), expected, atol=1e-5, rtol=1e-4)


def test_s2cag_smoothing_matches_dense_random_walk_sum():
    graph = tiny_graph(sparse=True)
    model = S2CAG(graph.num_nodes, 3, num_layers=3, alpha=1.5, iterations=5)
    x = F.normalize(dense_features(graph), dim=1)
    p = random_walk_matrix(graph)
    weights = nsr_weights(3, 1.5)
    expected = sum(w * torch.linalg.matrix_power(p, t) @ x for t, w in enumerate(weights))
    with torch.no_grad():
        z = model.encoder(GraphBatch.full(graph).x, GraphBatch.full(graph))
    torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-4)
    assert sum(weights) == pytest.approx(1.0)
    assert weights[-1] > weights[0]  # alpha > 1 favours the longer walks


@pytest.mark.parametrize(
    "build",
    [
        lambda g: SGC(3),
        lambda g: SSGC(4, 0.05),
        lambda g: S2CAG(g.num_nodes, 3, num_layers=3, alpha=1.2, iterations=30),
        lambda g: MS2CAG(g.num_nodes, 3, num_layers=3, alpha=1.2, iterations=30),
    ],
    ids=["sgc", "ssgc", "s2cag", "ms2cag"],
)
@pytest.mark.parametrize("sparse", [False, True])
def test_layerwise_inference_equals_full_batch(build, sparse):
    graph = tiny_graph(sparse=sparse)
    model = build(graph).eval()
    expected = full(model, graph)
    got = layerwise(model, graph, CPU, batch_size=7)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    "build",
    [lambda g: SSGC(4, 0.05), lambda g: MS2CAG(g.num_nodes, 3, 3, alpha=1.2, iterations=30)],
    ids=["ssgc", "ms2cag"],
)
def test_sparse_and_dense_features_give_the_same_embedding(build):
    sparse = tiny_graph(sparse=True)
    dense = Graph.from_edge_index(
        "dense", sparse.edge_index(), sparse.num_nodes, sparse.x.to_dense(), sparse.y
    )
    torch.testing.assert_close(
        full(build(sparse), sparse), full(build(dense), dense), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("model", [SGC(2), SSGC(2, 0.1), S2CAG(10, 2, 2, 1.0, 5)])
def test_training_is_refused_with_a_usage_error(model):
    assert model.trainable is False
    with pytest.raises(UsageError, match="needs no training"):
        model.loss(GraphBatch.full(tiny_graph()))


def test_models_build_from_settings():
    settings = Settings(num_layers=5, alpha=0.2, gamma=0.9, subspace_iterations=7, seed=3)
    ssgc = SSGC.from_settings(8, 60, 3, settings)
    assert (ssgc.encoder.num_layers, ssgc.alpha) == (5, 0.2)
    ms2cag = MS2CAG.from_settings(8, 60, 3, settings)
    assert (ms2cag.n_clusters, ms2cag.iterations, ms2cag.seed, ms2cag.gamma) == (3, 7, 3, 0.9)
    with pytest.raises(UsageError, match="n_clusters"):
        S2CAG.from_settings(8, 60, None, settings)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_ssgc_refuses_a_teleport_weight_outside_the_unit_interval(alpha):
    with pytest.raises(UsageError, match="alpha"):
        SSGC(3, alpha)


def test_s2cag_embedding_shape_and_determinism():
    graph = tiny_graph(nodes=60, clusters=3)
    for model in s2cag_models(graph):
        first, second = full(model, graph), full(model, graph)
        assert first.shape == (graph.num_nodes, 3)
        assert torch.equal(first, second)
        # Eigenvectors of a symmetric matrix: orthonormal columns.
        torch.testing.assert_close(first.T @ first, torch.eye(3), atol=1e-4, rtol=0)


def test_s2cag_spans_the_dense_spectral_solution():
    graph = tiny_graph(nodes=60, clusters=3)
    s2cag, ms2cag = s2cag_models(graph)
    with torch.no_grad():
        z = s2cag.encoder(GraphBatch.full(graph).x, GraphBatch.full(graph)).double()
    u = torch.linalg.svd(z, full_matrices=False).U[:, 1:4]
    zn = torch.nn.functional.normalize(z, dim=1)  # MS2CAG's normalised representation
    d = zn @ zn.sum(0)
    b = zn @ zn.T - torch.outer(d, d) / d.sum()
    values, vectors = torch.linalg.eigh(b)
    top = vectors[:, values.argsort(descending=True)[:3]]
    for model, expected in [(s2cag, u), (ms2cag, top)]:
        got = full(model, graph).double()
        # Compare the spanned subspaces (vectors are defined up to sign and rotation).
        torch.testing.assert_close(got @ got.T, expected @ expected.T, atol=1e-3, rtol=0)


@pytest.mark.parametrize("index", [0, 1], ids=["s2cag", "ms2cag"])
def test_s2cag_separates_two_planted_clusters(index):
    graph = two_planted_clusters()
    model = s2cag_models(graph)[index]
    z = F.normalize(full(model, graph), dim=1).numpy()
    labels = KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(z)
    assert normalized_mutual_info_score(graph.y.numpy(), labels) > 0.9


def test_s2cag_refuses_to_embed_a_subset_of_nodes():
    graph = tiny_graph()
    model = s2cag_models(graph)[0].eval()
    with pytest.raises(UsageError, match="whole graph"):
        layerwise(model, graph, CPU, batch_size=16, nodes=torch.tensor([0, 5, 9]))
