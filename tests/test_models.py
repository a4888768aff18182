"""Clustering methods: registry, the trainer's contract, objectives in both modes."""

from __future__ import annotations

import pytest
import torch
from sampled_batches import sample_batch, tiny_graph

from agc_cli.engine.session import build_model
from agc_cli.errors import UsageError
from agc_cli.models import MODELS, ClusteringModel, GraphBatch, LossOutput, get_model_class
from agc_cli.models.dgi import DGI
from agc_cli.models.dmon import DMoN
from agc_cli.settings import Settings

METHODS = [
    "dgi",
    "gae",
    "ccassg",
    "dmon",
    "magi",
    "daegc",
    "ns4gc",
    "dinknet",
    "gbt",
    "vgae",
    "mincut",
]


def _settings(**values) -> Settings:
    values = {"hidden_channels": 16, "num_layers": 2, **values}
    return Settings(**values)


def _model(name: str, graph, **values) -> ClusteringModel:
    torch.manual_seed(0)
    settings = _settings(model=name, **values)
    return build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)


def _minibatch(graph, num_hops: int = 2) -> GraphBatch:
    seeds = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(0))[:24]
    data = sample_batch(graph, seeds, num_hops, fan_out=4, generator=torch.Generator())
    return GraphBatch.from_sampled(data, graph)


def _loss_drop(model: ClusteringModel, batch: GraphBatch, steps: int = 20) -> tuple[float, float]:
    """Loss before and after ``steps`` Adam steps, both with the same random draws."""

    def loss_with_fixed_draws() -> LossOutput:
        model.generator = torch.Generator().manual_seed(123)
        return model.loss(batch)

    with torch.no_grad():
        before = loss_with_fixed_draws().loss.item()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        out = model.loss(batch)
        assert torch.isfinite(out.loss)
        out.loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_with_fixed_draws().loss.item()
    return before, after


def test_registry_lookup_is_case_insensitive():
    assert set(METHODS) <= set(MODELS)
    assert get_model_class("DGI") is DGI
    assert get_model_class("DMoN") is DMoN
    for name, cls in MODELS.items():
        assert cls.name == name
        assert cls.paper.startswith("https://")


def test_unknown_model_lists_valid_names():
    with pytest.raises(UsageError, match=r"^model: unknown 'dec'; choose one of .*ccassg.*dgi"):
        get_model_class("dec")


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_full_batch_loss_is_finite_and_decreases(name, sparse):
    graph = tiny_graph(sparse=sparse)
    model = _model(name, graph)
    out = model.loss(GraphBatch.full(graph))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(not part.requires_grad for part in out.parts.values())
    before, after = _loss_drop(model, GraphBatch.full(graph))
    assert after < before


@pytest.mark.parametrize("name", METHODS)
def test_minibatch_loss_is_finite_and_decreases(name):
    graph = tiny_graph(num_nodes=60)
    model = _model(name, graph)
    before, after = _loss_drop(model, _minibatch(graph))
    assert after < before


@pytest.mark.parametrize("name", METHODS)
def test_embed_returns_seed_rows(name):
    graph = tiny_graph()
    model = _model(name, graph, gnn_type="sage").eval()
    full = model.embed(GraphBatch.full(graph))
    assert full.shape[0] == graph.num_nodes
    batch = _minibatch(graph)
    assert model.embed(batch).shape == (batch.batch_size, full.shape[1])


@pytest.mark.parametrize("name", METHODS)
def test_every_gnn_type_trains(name):
    graph = tiny_graph()
    for gnn_type, heads in [("gcn", 1), ("sage", 1), ("gat", 2), ("gin", 1)]:
        model = _model(name, graph, gnn_type=gnn_type, heads=heads)
        model.loss(GraphBatch.full(graph)).loss.backward()
        grads = [p.grad for p in model.encoder.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_dmon_minibatch_loss_over_all_nodes_with_full_neighbourhoods_equals_full_batch():
    graph = tiny_graph()
    model = _model("dmon", graph).eval()
    seeds = torch.randperm(graph.num_nodes)
    batch = GraphBatch.from_sampled(sample_batch(graph, seeds, 2), graph)
    full = model.loss(GraphBatch.full(graph))
    sampled = model.loss(batch)
    torch.testing.assert_close(sampled.loss, full.loss)
    torch.testing.assert_close(sampled.parts["modularity"], full.parts["modularity"])


def test_dmon_needs_a_cluster_count():
    graph = tiny_graph()
    with pytest.raises(UsageError, match="^n_clusters: "):
        DMoN.from_settings(graph.num_features, graph.num_nodes, None, _settings())
    model = DMoN.from_settings(graph.num_features, graph.num_nodes, None, _settings(n_clusters=5))
    assert model.embed(GraphBatch.full(graph)).shape == (graph.num_nodes, 5)


def test_dmon_embedding_is_a_soft_assignment():
    graph = tiny_graph()
    c = _model("dmon", graph).embed(GraphBatch.full(graph))
    assert c.shape == (graph.num_nodes, graph.num_classes)
    torch.testing.assert_close(c.sum(dim=1), torch.ones(graph.num_nodes))


@pytest.mark.parametrize("name", ["dgi", "gae", "ccassg"])
def test_random_draws_are_reproducible_from_global_rng_or_generator(name):
    graph = tiny_graph()
    model = _model(name, graph)
    batch = GraphBatch.full(graph)
    torch.manual_seed(5)
    first = model.loss(batch).loss
    torch.manual_seed(5)
    assert model.loss(batch).loss == first
    losses = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model.generator = torch.Generator().manual_seed(7)
        losses.append(model.loss(batch).loss)
    assert losses[0] == losses[1]


def test_generator_state_travels_in_state_dict():
    graph = tiny_graph()
    model = _model("dgi", graph)
    model.generator = torch.Generator().manual_seed(3)
    model.loss(GraphBatch.full(graph))
    state = model.state_dict()
    restored = _model("dgi", graph)
    restored.load_state_dict(state)
    batch = GraphBatch.full(graph)
    assert model.loss(batch).loss == restored.loss(batch).loss


def test_default_hooks_are_no_ops():
    graph = tiny_graph()
    model = _model("dgi", graph)
    model.begin_epoch(0, graph)
    assert model.seed_batches(graph, 8, torch.Generator()) is None


def test_gae_seed_batches_cover_every_edge_endpoint_reproducibly():
    graph = tiny_graph()
    model = _model("gae", graph)
    batches = list(model.seed_batches(graph, 10, torch.Generator().manual_seed(0)))
    again = list(model.seed_batches(graph, 10, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    assert all(b.numel() == b.unique().numel() <= 10 for b in batches)
    covered = torch.cat(batches).unique()
    torch.testing.assert_close(covered, torch.unique(graph.row))


def test_gae_minibatch_positives_are_edges_between_seeds():
    graph = tiny_graph()
    seeds = next(iter(_model("gae", graph).seed_batches(graph, 16, torch.Generator())))
    batch = GraphBatch.from_sampled(sample_batch(graph, seeds, 2), graph)
    src, dst = batch.seed_block().edge_index
    assert src.numel() > 0
    edges = set(map(tuple, graph.edge_index().T.tolist()))
    assert all((int(seeds[s]), int(seeds[d])) in edges for s, d in zip(src, dst, strict=True))


@pytest.mark.parametrize("name", METHODS)
def test_presets_build_a_model(name):
    from agc_cli.presets import model_preset

    graph = tiny_graph()
    settings = Settings(**{**model_preset(name, "Cora"), "model": name})
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    assert torch.isfinite(model.loss(GraphBatch.full(graph)).loss)


@pytest.mark.parametrize("shift", [0.0, 5.0])
def test_cca_terms_equal_the_standardised_views_formula(shift):
    """CCA-SSG's terms from centred Gram matrices equal the paper's formula on explicitly
    standardised views, values and gradients (also when the means are far from zero)."""
    from agc_cli.models.ccassg import cca_terms

    gen = torch.Generator().manual_seed(0)
    z1 = (torch.randn(200, 12, generator=gen, dtype=torch.double) + shift).requires_grad_()
    z2 = (3 * torch.randn(200, 12, generator=gen, dtype=torch.double) - shift).requires_grad_()

    def reference(a, b):
        n, eye = a.shape[0], torch.eye(a.shape[1], dtype=a.dtype)
        a, b = ((z - z.mean(0)) / z.std(0) for z in (a, b))
        decorrelation = (eye - a.T @ a / n).pow(2).sum() + (eye - b.T @ b / n).pow(2).sum()
        return -(a * b).sum() / n, decorrelation

    results = []
    for terms in (reference, cca_terms):
        invariance, decorrelation = terms(z1, z2)
        grads = torch.autograd.grad(invariance + 0.3 * decorrelation, (z1, z2))
        results.append((invariance.detach(), decorrelation.detach(), *grads))
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
