"""NS4GC, Dink-Net, Graph Barlow Twins, VGAE and the k-means baseline: the defining
property of each objective, and training full-batch and mini-batch through the real trainer."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_agc
from sampled_batches import tiny_graph

from agc_cli.engine.inference import layerwise
from agc_cli.engine.session import build_model, open_session, train
from agc_cli.errors import UsageError
from agc_cli.models import GraphBatch, get_model_class
from agc_cli.models import ns4gc as ns4gc_module
from agc_cli.models.dinknet import CLUSTER, PRETRAIN, dilation_loss, shrink_loss
from agc_cli.models.gbt import barlow_twins_terms
from agc_cli.models.ns4gc import alignment_term, neighbour_term, sparsity_term
from agc_cli.models.vgae import kl_divergence
from agc_cli.settings import Settings, load_settings

TINY = "sbm:nodes=400,clusters=4,degree=8,homophily=0.85,features=16,snr=2,seed=1"
TRAINABLE = ["ns4gc", "dinknet", "gbt", "vgae"]


def _model(name: str, graph, **values):
    torch.manual_seed(0)
    settings = Settings(**{"hidden_channels": 16, "num_layers": 2, **values, "model": name})
    return build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1)


# ----- NS4GC -----------------------------------------------------------------------------------


def test_ns4gc_alignment_is_minimal_for_identical_views():
    z = _unit(10, 6, 0)
    torch.testing.assert_close(alignment_term(z, z), torch.tensor(-1.0))
    assert alignment_term(z, _unit(10, 6, 1)) > -1.0 + 1e-3


def test_ns4gc_neighbour_term_pulls_edges_together_and_leaves_other_nodes():
    z1 = _unit(6, 4, 0).requires_grad_()
    z2 = _unit(6, 4, 1).requires_grad_()
    edges = torch.tensor([[0, 1], [1, 0]])
    g1, g2 = torch.autograd.grad(neighbour_term(z1, z2, edges), [z1, z2])
    before = (z1[0] @ z2[1]).item() + (z1[1] @ z2[0]).item()
    step1, step2 = F.normalize(z1 - 0.1 * g1, dim=-1), F.normalize(z2 - 0.1 * g2, dim=-1)
    after = (step1[0] @ step2[1]).item() + (step1[1] @ step2[0]).item()
    assert after > before
    assert torch.all(g1[2:] == 0) and torch.all(g2[2:] == 0)


def test_ns4gc_sparsity_pushes_similar_non_edges_below_threshold_and_ignores_edges():
    # Nodes 0 and 1 are nearly identical (similarity above the threshold), not adjacent; every
    # other pair is an edge, so only (0, 1) and (1, 0) are counted.
    z = _unit(4, 3, 0)
    z[1] = F.normalize(z[0] + 0.05, dim=-1)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    n = 4
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and {i, j} != {0, 1}]
    edges = torch.tensor(pairs).T
    value = sparsity_term(z1, z2, edges, threshold=0.6, tau=0.1)
    expected = torch.sigmoid((torch.stack([z[0] @ z[1], z[1] @ z[0]]) - 0.6) / 0.1).mean()
    torch.testing.assert_close(value, expected)
    g1, g2 = torch.autograd.grad(value, [z1, z2])
    step1, step2 = F.normalize(z1 - 0.5 * g1, dim=-1), F.normalize(z2 - 0.5 * g2, dim=-1)
    assert (step1[0] @ step2[1]) < (z[0] @ z[1])
    assert torch.all(g1[2:] == 0) and torch.all(g2[2:] == 0)


def test_ns4gc_sparsity_column_sample_estimates_the_exact_mean(monkeypatch):
    z1, z2 = _unit(30, 5, 0), _unit(30, 5, 1)
    src = torch.arange(30)
    edges = torch.stack([torch.cat([src, (src + 1) % 30]), torch.cat([(src + 1) % 30, src])])
    exact = sparsity_term(z1, z2, edges, 0.2, 0.5)
    monkeypatch.setattr(ns4gc_module, "DENSE_MAX_NODES", 10)  # 100 // 30 = 3 columns a draw
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sparsity_term(z1, z2, edges, 0.2, 0.5, g) for _ in range(3000)])
    assert not torch.allclose(draws.min(), draws.max())
    torch.testing.assert_close(draws.mean(), exact, atol=5e-3, rtol=0)


def test_ns4gc_uses_one_drop_rate_per_view():
    graph = tiny_graph()
    model = _model("ns4gc", graph, edge_drop="0.1,0.7", feature_mask=0.3)
    assert model.edge_drop == (0.1, 0.7) and model.feature_mask == (0.3, 0.3)
    with pytest.raises(ValueError, match="each rate must be a number in"):
        Settings(edge_drop=1.0)


# ----- Dink-Net --------------------------------------------------------------------------------


def test_dinknet_dilation_grows_with_centre_spread():
    centres = _unit(5, 4, 0)
    brute = -torch.stack(
        [(centres[i] - centres[j]).pow(2).sum() for i in range(5) for j in range(5) if i != j]
    ).mean()
    torch.testing.assert_close(dilation_loss(centres), brute)
    spread = [dilation_loss(scale * centres) for scale in (0.5, 1.0, 2.0)]
    assert spread[0] > spread[1] > spread[2]
    torch.testing.assert_close(spread[2], 4 * spread[1])


def test_dinknet_shrink_is_zero_at_the_centres_and_the_mean_distance_elsewhere():
    point = torch.randn(1, 4)
    torch.testing.assert_close(
        shrink_loss(point.repeat(6, 1), point.repeat(3, 1)), torch.tensor(0.0)
    )
    z, centres = torch.randn(7, 4), torch.randn(3, 4)
    brute = torch.cdist(z, centres).pow(2).mean()
    torch.testing.assert_close(shrink_loss(z, centres), brute)


def test_dinknet_pretrains_then_initialises_centres_from_kmeans_and_resumes_the_phase():
    graph = tiny_graph()
    model = _model("dinknet", graph, pretrain_epochs=1)
    batch = GraphBatch.full(graph)
    model.begin_epoch(0, graph)
    assert model.phase == PRETRAIN and set(model.loss(batch).parts) == {"discrimination"}
    model.begin_epoch(1, graph)
    out = model.loss(batch)
    assert model.phase == CLUSTER and {"dilation", "shrink"} <= set(out.parts)
    assert model.centres.abs().sum() > 0
    restored = _model("dinknet", graph, pretrain_epochs=1)
    restored.load_state_dict(model.state_dict())
    assert restored.phase == CLUSTER
    torch.testing.assert_close(restored.centres, model.centres)


def test_dinknet_clustering_loss_trains_centres_and_encoder():
    graph = tiny_graph()
    model = _model("dinknet", graph)
    model.begin_epoch(0, graph)
    loss = model.loss(GraphBatch.full(graph)).loss
    grads = torch.autograd.grad(loss, [model.centres, model.encoder.convs[0].weight])
    assert all(g.abs().sum() > 0 for g in grads)


def test_dinknet_needs_a_cluster_count():
    graph = tiny_graph()
    with pytest.raises(UsageError, match="^n_clusters: "):
        get_model_class("dinknet").from_settings(
            graph.num_features, graph.num_nodes, None, Settings()
        )


# ----- Graph Barlow Twins ----------------------------------------------------------------------


def test_gbt_identical_decorrelated_views_have_zero_loss_and_correlated_dims_are_penalised():
    # Columns 1..3 of a 4 x 4 Hadamard matrix: zero mean, unit variance, orthogonal.
    h = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]).float()
    z = h[:, 1:].repeat(3, 1)
    invariance, redundancy = barlow_twins_terms(z, z)
    torch.testing.assert_close(invariance, torch.tensor(0.0))
    torch.testing.assert_close(redundancy, torch.tensor(0.0))
    correlated = torch.cat([z[:, :2], z[:, :1]], dim=1)  # the third dimension repeats the first
    invariance, redundancy = barlow_twins_terms(correlated, correlated)
    torch.testing.assert_close(invariance, torch.tensor(0.0))
    torch.testing.assert_close(redundancy, torch.tensor(2.0))  # C_13 = C_31 = 1


# ----- VGAE ------------------------------------------------------------------------------------


def test_vgae_kl_is_zero_for_the_standard_normal_and_positive_otherwise():
    zero = torch.zeros(5, 3)
    torch.testing.assert_close(kl_divergence(zero, zero), torch.tensor(0.0))
    assert kl_divergence(zero + 0.5, zero) > 0 and kl_divergence(zero, zero - 0.5) > 0


def test_vgae_reparameterisation_draws_from_the_model_generator():
    graph = tiny_graph()
    model = _model("vgae", graph)
    batch = GraphBatch.full(graph)
    latents = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model.generator = torch.Generator().manual_seed(7)
        latents.append(model.latent(batch)[0])
    torch.testing.assert_close(latents[0], latents[1])
    model.generator = torch.Generator().manual_seed(8)
    assert not torch.allclose(model.latent(batch)[0], latents[0])
    model.eval()
    mu = model.latent(batch)[0]
    torch.testing.assert_close(mu, model.embed(batch))
    assert mu.shape == (graph.num_nodes, 8)


def test_vgae_needs_an_even_width():
    graph = tiny_graph()
    with pytest.raises(UsageError, match="^hidden_channels: vgae"):
        _model("vgae", graph, hidden_channels=15)


# ----- k-means baseline ------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_kmeans_embedding_is_the_feature_matrix_full_batch_and_layerwise(sparse):
    graph = tiny_graph(sparse=sparse)
    model = get_model_class("kmeans").from_settings(
        graph.num_features, graph.num_nodes, graph.num_classes, Settings(model="kmeans")
    )
    dense = graph.x.to_dense() if sparse else graph.x
    with torch.no_grad():
        full = model.eval().embed(GraphBatch.full(graph))
    torch.testing.assert_close(full, dense)
    torch.testing.assert_close(layerwise(model, graph, torch.device("cpu"), 7), dense)
    nodes = torch.tensor([5, 0, 17])
    torch.testing.assert_close(
        layerwise(model, graph, torch.device("cpu"), 2, nodes=nodes), dense[nodes]
    )


def test_kmeans_runs_end_to_end_without_training(capsys, tmp_path):
    r = run_agc(capsys, "run", "--model", "kmeans", "--dataset", TINY, "--run-dir",
                str(tmp_path / "run"), "--json")  # fmt: skip
    assert r.code == 0, r.err
    metrics = json.loads(r.out)["metrics"]  # stdout holds the JSON document alone
    nmi = [run["nmi"] for run in metrics["runs"]]
    # The planted clusters show in the synthetic features: k-means on them beats chance.
    assert len(nmi) == 5 and all(0.2 < v <= 1 for v in nmi)


# ----- training through the real trainer -------------------------------------------------------


@pytest.mark.parametrize("name", TRAINABLE)
def test_trains_mini_batch_through_the_trainer(name):
    settings = load_settings({
        "dataset": TINY, "model": name, "hidden_channels": 16, "num_layers": 2,
        "mini_batch": True, "batch_size": 128, "fan_out": "5,5", "epochs": 4, "lr": 0.01,
        "pretrain_epochs": 2,
    })  # fmt: skip
    session = open_session(settings)
    _, result = train(session, None)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    if name in ("ns4gc", "gbt", "vgae"):
        assert min(losses[-2:]) < losses[0]
