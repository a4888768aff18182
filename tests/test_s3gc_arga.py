"""S3GC, ARGA and ARGVA: the defining property of each method, its optimizer arrangement, and
training (full-batch, mini-batch, resumed) through the real trainer."""

from __future__ import annotations

import math

import pytest
import torch
from sampled_batches import sample_batch, tiny_graph
from test_resume import assert_same_weights, interrupted_then_resumed, uninterrupted

from agc_cli.engine.inference import layerwise
from agc_cli.engine.optim import JointOptimizer
from agc_cli.engine.session import build_model, open_session, train
from agc_cli.engine.trainer import build_optimizer
from agc_cli.errors import UsageError
from agc_cli.models import GraphBatch
from agc_cli.models import s3gc as s3gc_module
from agc_cli.models.arga import discriminator_loss
from agc_cli.settings import Settings, load_settings

TINY = "sbm:nodes=400,clusters=4,degree=8,homophily=0.85,features=16,snr=2,seed=1"


def _model(name: str, graph, **values):
    torch.manual_seed(0)
    settings = Settings(**{"hidden_channels": 16, "num_layers": 2, **values, "model": name})
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    model.generator = torch.Generator().manual_seed(1)
    return model, settings


def _neighbours(graph) -> list[set[int]]:
    colptr, row = graph.colptr.tolist(), graph.row.tolist()
    return [set(row[colptr[v] : colptr[v + 1]]) for v in range(graph.num_nodes)]


def _trained(name: str, epochs: int, **values) -> list[float]:
    settings = load_settings({"dataset": TINY, "model": name, "hidden_channels": 16,
                              "epochs": epochs, "save_every": 0, **values})  # fmt: skip
    _, result = train(open_session(settings), None)
    return [h["loss"] for h in result.history]


# ----- S3GC ------------------------------------------------------------------------------------


def test_s3gc_table_gets_sparse_gradients_only_for_the_rows_in_the_batch():
    graph = tiny_graph(num_nodes=60)
    model, settings = _model("s3gc", graph, num_walks=2, walk_length=1)
    model.begin_epoch(0, graph)
    batch = GraphBatch.from_sampled(sample_batch(graph, torch.tensor([0, 7, 13]), 1), graph)
    state = model.generator.get_state()
    model.loss(batch).loss.backward()
    grad = model.encoder.table.weight.grad
    assert grad.is_sparse
    model.generator.set_state(state)
    anchors, positives, negatives = model.contrast_nodes(batch)
    used = torch.unique(torch.cat([anchors, positives.reshape(-1), negatives.reshape(-1)]))
    rows = torch.unique(grad.coalesce().indices()[0])
    assert torch.equal(rows, used) and rows.numel() < graph.num_nodes
    # The trainer's optimizer: SparseAdam moves exactly those rows, Adam the dense weights.
    optimizer = build_optimizer(model, settings, "cpu")
    assert isinstance(optimizer, JointOptimizer)
    before = model.encoder.table.weight.detach().clone()
    optimizer.step()
    moved = (model.encoder.table.weight != before).any(dim=1).nonzero().view(-1)
    assert torch.equal(moved, used)


def test_s3gc_positives_are_the_nodes_each_walk_visits():
    graph = tiny_graph(num_nodes=60)
    model, _ = _model("s3gc", graph, num_walks=3, walk_length=4)
    neighbours = _neighbours(graph)
    seeds = torch.tensor([3, 11, 42])
    sampled = GraphBatch.from_sampled(sample_batch(graph, seeds, 1), graph)
    model.begin_epoch(0, graph)
    # Registered topology (global ids) and, without one, the batch's own edges (full batch).
    for batch, fresh in [(sampled, False), (GraphBatch.full(graph), True)]:
        if fresh:
            model._graph = None
        anchors, positives, negatives = model.contrast_nodes(batch)
        assert torch.equal(anchors, batch.n_id[: batch.batch_size])
        assert positives.shape == negatives.shape == (anchors.numel(), 3, 4)
        for a, walks in zip(anchors.tolist(), positives.tolist(), strict=True):
            for walk in walks:
                path = [a, *walk]
                assert all(v in neighbours[u] for u, v in zip(path, path[1:], strict=False))
        assert 0 <= int(negatives.min()) and int(negatives.max()) < graph.num_nodes


def test_s3gc_propagations_are_gcn_step_and_truncated_pagerank(monkeypatch):
    monkeypatch.setattr(s3gc_module, "PROPAGATION_COLUMNS", 5)  # several column chunks
    graph = tiny_graph(num_nodes=30, num_features=12, sparse=True)
    batch = GraphBatch.full(graph)
    ax, sx = s3gc_module.propagated_features(batch.x, batch.block(0, 1), 3, 0.2)
    n = graph.num_nodes
    adj = torch.zeros(n, n)
    adj[graph.row, graph.col()] = 1.0
    adj += torch.eye(n)
    d = adj.sum(1).rsqrt()
    a_hat = d[:, None] * adj * d[None, :]
    x = graph.x.to_dense()
    expected = sum(0.2 * 0.8**i * torch.linalg.matrix_power(a_hat, i) @ x for i in range(4))
    torch.testing.assert_close(ax, a_hat @ x)
    torch.testing.assert_close(sx, expected)


@pytest.mark.parametrize("mlp", [False, True], ids=["linear", "mlp"])
def test_s3gc_embeds_a_node_the_same_in_a_sampled_and_the_full_batch(monkeypatch, mlp):
    if mlp:  # the heads of large graphs
        monkeypatch.setattr(s3gc_module, "MLP_MIN_NODES", 1)
    graph = tiny_graph()
    model, _ = _model("s3gc", graph)
    assert model.encoder.mlp is mlp
    model.eval().begin_epoch(0, graph)
    # Linear heads, full batch: transform, then propagate; otherwise the precomputed rows.
    full = model.embed(GraphBatch.full(graph))
    seeds = torch.tensor([9, 2, 30])
    batch = GraphBatch.from_sampled(sample_batch(graph, seeds, 1), graph)
    torch.testing.assert_close(model.embed(batch), full[seeds])
    torch.testing.assert_close(full.norm(dim=1), torch.ones(graph.num_nodes))


def test_s3gc_refuses_layerwise_inference():
    graph = tiny_graph()
    with pytest.raises(UsageError, match="^force_full_batch_inference: s3gc"):
        _model("s3gc", graph, mini_batch=True)
    model, _ = _model("s3gc", graph)
    with pytest.raises(UsageError, match="^force_full_batch_inference: s3gc"):
        layerwise(model.eval(), graph, torch.device("cpu"), 8)


def test_s3gc_loss_decreases_on_a_planted_graph():
    losses = _trained("s3gc", 8)
    assert all(math.isfinite(v) and -1 <= v <= 0 for v in losses)
    assert losses[-1] < losses[0]


# ----- ARGA / ARGVA ----------------------------------------------------------------------------


def _prior_accuracy(model, z: torch.Tensor) -> tuple[float, float]:
    """Fractions of prior samples the discriminator calls real and of embeddings it calls fake."""
    d = model.regulariser.discriminator
    with torch.no_grad():
        prior = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))
        return float((d(prior) > 0).float().mean()), float((d(z) < 0).float().mean())


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _snapshot(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_arga_discriminator_learns_to_separate_prior_samples_from_fixed_embeddings():
    graph = tiny_graph()
    model, _ = _model("arga", graph)
    batch = GraphBatch.full(graph)
    encoder_before = _snapshot(model.encoder)
    z = model.encoder(batch.x, batch).detach()
    prior = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
    d = model.regulariser.discriminator
    first = float(discriminator_loss(d, z, prior))
    for _ in range(40):
        model.regulariser.fit_discriminator(z, model.generator)
    assert float(discriminator_loss(d, z, prior)) < first
    real, fake = _prior_accuracy(model, z)
    assert real > 0.9 and fake > 0.9
    assert _same(_snapshot(model.encoder), encoder_before)
    assert all(p.grad is None and not p.requires_grad for p in d.parameters())


def test_arga_encoder_step_lowers_the_discriminators_accuracy():
    graph = tiny_graph()
    model, _ = _model("arga", graph)
    batch = GraphBatch.full(graph)
    for _ in range(40):
        model.regulariser.fit_discriminator(model.encoder(batch.x, batch), model.generator)
    d_before = _snapshot(model.regulariser.discriminator)
    d = model.regulariser.discriminator

    def fake_confidence() -> float:  # D's mean probability that an embedding is fake
        with torch.no_grad():
            return float(torch.sigmoid(-d(model.encoder(batch.x, batch))).mean())

    before = fake_confidence()
    assert before > 0.9
    for _ in range(50):
        model.regulariser.fool(model.encoder(batch.x, batch))
    assert fake_confidence() < before - 0.02
    assert _same(_snapshot(model.regulariser.discriminator), d_before)
    # The generator step is the encoder's own: no gradient is left for the trainer's optimizer.
    assert all(p.grad is None for p in model.encoder.parameters())


@pytest.mark.parametrize("name", ["arga", "argva"])
def test_a_training_step_is_discriminator_then_generator_then_reconstruction(name):
    graph = tiny_graph()
    model, settings = _model(name, graph)
    optimized = {id(p) for group in build_optimizer(model, settings, "cpu").param_groups
                 for p in group["params"]}  # fmt: skip
    assert optimized == {id(p) for p in model.encoder.parameters()}
    batch = GraphBatch.full(graph)
    d_before, e_before = _snapshot(model.regulariser.discriminator), _snapshot(model.encoder)
    out = model.loss(batch)
    assert set(out.parts) >= {"reconstruction", "adversarial", "discriminator"}
    # The round moved the discriminator and the encoder; the trainer gets the reconstruction
    # (plus KL) on the updated encoder, with gradients for the encoder alone.
    d_after = _snapshot(model.regulariser.discriminator)
    assert not any(torch.equal(x, y) for x, y in zip(d_before, d_after, strict=True))
    assert not _same(e_before, _snapshot(model.encoder))
    expected = out.parts["reconstruction"] + out.parts.get("kl", 0)
    torch.testing.assert_close(out.loss.detach(), expected)
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.regulariser.discriminator.parameters())
    with torch.no_grad():  # without gradients (evaluation): no round
        d_now, e_now = _snapshot(model.regulariser.discriminator), _snapshot(model.encoder)
        model.loss(batch)
    assert _same(d_now, _snapshot(model.regulariser.discriminator))
    assert _same(e_now, _snapshot(model.encoder))


def test_the_round_leaves_the_trainers_accumulated_gradients_alone():
    graph = tiny_graph()
    model, _ = _model("arga", graph)
    batch = GraphBatch.full(graph)
    model.loss(batch).loss.backward()
    accumulated = [p.grad.clone() for p in model.encoder.parameters()]
    model.regulariser.step(model.encoder(batch.x, batch), model.generator)
    assert _same(accumulated, [p.grad for p in model.encoder.parameters()])


@pytest.mark.parametrize("name", ["arga", "argva"])
def test_adversarial_training_stays_finite_for_50_epochs(name):
    settings = load_settings({"dataset": TINY, "model": name, "hidden_channels": 16,
                              "epochs": 50, "save_every": 0})  # fmt: skip
    session = open_session(settings)
    _, result = train(session, None)
    assert len(result.history) == 50
    for record in result.history:
        assert all(math.isfinite(record[k]) for k in ("loss", "adversarial", "discriminator"))
    assert all(torch.isfinite(p).all() for p in session.model.parameters())


def test_arga_state_dict_round_trip_keeps_the_discriminators_optimizer(tmp_path):
    graph = tiny_graph()
    model, _ = _model("arga", graph)
    batch = GraphBatch.full(graph)
    model.loss(batch)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    other, _ = _model("arga", graph)
    other.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert other.regulariser.d_optimizer.state_dict()["state"]
    assert other.regulariser.g_optimizer.state_dict()["state"]
    torch.testing.assert_close(model.loss(batch).loss, other.loss(batch).loss)


# ----- through the trainer: mini-batch, resume -------------------------------------------------


@pytest.mark.parametrize("name", ["s3gc", "arga", "argva"])
def test_trains_mini_batch_through_the_trainer(name):
    losses = _trained(name, 3, mini_batch=True, batch_size=256, num_layers=2, fan_out="5,5",
                      lr=0.01)  # fmt: skip
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    if name == "s3gc":
        assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("name", "mode"), [("s3gc", "mini"), ("s3gc", "full"), ("arga", "mini"), ("argva", "full")]
)
def test_resumed_run_matches_uninterrupted_run(tmp_path, name, mode):
    # ARGA's discriminator and both private optimizers continue exactly, as S3GC's sparse
    # table and its SparseAdam moments do.
    over = {"model": name, "mini_batch": mode == "mini", "epochs": 2 if mode == "mini" else 4}
    if name == "arga":  # GAE's edge batches: about 15 per epoch, not 56
        over["batch_size"] = 256
    expected = uninterrupted(tmp_path, **over)
    got = interrupted_then_resumed(tmp_path, 3 if mode == "full" else 7, "signal", **over)
    assert_same_weights(expected, got)
