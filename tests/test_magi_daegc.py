"""MAGI and DAEGC: objectives in both modes, MAGI's walks and batches, DAEGC's phases, targets."""

from __future__ import annotations

import io

import pytest
import torch
from sampled_batches import sample_batch, tiny_graph

from agc_cli.engine.session import build_model
from agc_cli.errors import UsageError
from agc_cli.models import ClusteringModel, GraphBatch
from agc_cli.models import daegc as daegc_module
from agc_cli.models.daegc import DAEGC, reconstruction_loss, sharpen
from agc_cli.models.magi import MAGI, communities, walk_modularity
from agc_cli.sampling import random_walk
from agc_cli.settings import Settings


def _settings(**values) -> Settings:
    return Settings(**{"hidden_channels": 16, "num_layers": 2, **values})


def _magi(graph, **values) -> MAGI:
    torch.manual_seed(0)
    settings = _settings(num_walks=10, walk_length=3, **values)
    settings = settings.model_copy(update={"model": "magi"})
    return build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)


def _daegc(graph, **values) -> DAEGC:
    torch.manual_seed(0)
    settings = _settings(gnn_type="gat", heads=2, activation="elu", **values)
    settings = settings.model_copy(update={"model": "daegc"})
    return build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)


def _sampled(graph, seeds: torch.Tensor) -> GraphBatch:
    data = sample_batch(graph, seeds, 2, fan_out=4, generator=torch.Generator().manual_seed(0))
    return GraphBatch.from_sampled(data, graph)


def _loss_drop(model: ClusteringModel, batch: GraphBatch, steps: int = 30) -> tuple[float, float]:
    """Loss before and after ``steps`` Adam steps, both with the same random draws."""

    def loss_with_fixed_draws() -> float:
        model.generator = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return model.loss(batch).loss.item()

    before = loss_with_fixed_draws()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        out = model.loss(batch)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert all(not part.requires_grad for part in out.parts.values())
        out.loss.backward()
        optimizer.step()
    return before, loss_with_fixed_draws()


def _edges(graph) -> set[tuple[int, int]]:
    return set(map(tuple, graph.edge_index().T.tolist()))


# ----- MAGI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_magi_full_batch_loss_is_finite_and_decreases(sparse):
    graph = tiny_graph(sparse=sparse)
    model = _magi(graph)
    model.begin_epoch(0, graph)
    before, after = _loss_drop(model, GraphBatch.full(graph))
    assert after < before


def test_magi_minibatch_loss_is_finite_and_decreases():
    graph = tiny_graph(num_nodes=60)
    model = _magi(graph)
    model.begin_epoch(0, graph)
    seeds = next(iter(model.seed_batches(graph, 24, torch.Generator().manual_seed(0))))
    before, after = _loss_drop(model, _sampled(graph, seeds))
    assert after < before


def test_magi_positive_weights_are_symmetric_positive_and_off_diagonal():
    graph = tiny_graph(num_nodes=60)
    seeds = torch.randperm(60, generator=torch.Generator().manual_seed(1))[:30]
    generator = torch.Generator().manual_seed(0)
    pairs, weights = walk_modularity(random_walk, graph.colptr, graph.row, seeds, 20, 3, generator)
    assert pairs.shape[1] > 0 and pairs.shape[1] == weights.numel()
    assert bool((pairs >= 0).all()) and bool((pairs < 30).all())
    assert bool((pairs[0] != pairs[1]).all())
    assert bool((weights > 0).all())
    weight_of = {(i, j): w for (i, j), w in zip(pairs.T.tolist(), weights.tolist(), strict=True)}
    assert all(weight_of.get((j, i)) == w for (i, j), w in weight_of.items())


def test_magi_one_step_walks_make_positives_of_adjacent_seeds_only():
    graph = tiny_graph(num_nodes=60)
    seeds = torch.arange(60)
    pairs, _ = walk_modularity(
        random_walk, graph.colptr, graph.row, seeds, 20, 1, torch.Generator()
    )
    assert set(map(tuple, seeds[pairs].T.tolist())) <= _edges(graph)


def test_magi_groups_are_the_root_then_frequently_visited_nodes():
    graph = tiny_graph(num_nodes=60)
    roots = torch.tensor([5, 17, 42])
    nodes, sizes = communities(
        random_walk, graph.colptr, graph.row, roots, 30, 1, torch.Generator()
    )
    assert int(sizes.sum()) == nodes.numel()
    edges = _edges(graph)
    for root, group in zip(roots.tolist(), nodes.split(sizes.tolist()), strict=True):
        assert group[0] == root
        # One-step walks only reach neighbours.
        assert all((root, member) in edges for member in group[1:].tolist())


@pytest.mark.parametrize("batch_size", [16, 2])
def test_magi_seed_batches_are_reproducible_bounded_and_cover_every_node(batch_size):
    graph = tiny_graph(num_nodes=60)
    model = _magi(graph)

    def batches(seed: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return list(model.seed_batches(graph, batch_size, generator))

    first, again, other = batches(0), batches(0), batches(1)
    assert len(first) == len(again)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert len(first) != len(other) or not all(
        torch.equal(a, b) for a, b in zip(first, other, strict=True)
    )
    assert all(0 < b.numel() == b.unique().numel() <= batch_size for b in first)
    torch.testing.assert_close(torch.cat(first).unique(), torch.arange(60))


def test_magi_full_batch_pairs_travel_in_the_state_dict():
    graph = tiny_graph()
    batch = GraphBatch.full(graph)
    model = _magi(graph)
    model.loss(batch)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = _magi(graph)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    restored.generator = torch.Generator().manual_seed(99)  # no new draws are needed
    assert model.loss(batch).loss == restored.loss(batch).loss


def test_magi_embeddings_are_unit_rows():
    graph = tiny_graph()
    z = _magi(graph).embed(GraphBatch.full(graph))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(graph.num_nodes))


# ----- DAEGC --------------------------------------------------------------------------------


# Joint training chases a target that moves at every refresh (KL(P || Q) grows as Q sharpens);
# the objective decreases for a fixed target, so the joint cases refresh at step 0 only.
PHASES = pytest.mark.parametrize(
    "phase",
    [{"pretrain_epochs": 1}, {"pretrain_epochs": 0, "update_interval": 1000}],
    ids=["pretrain", "joint"],
)


@PHASES
def test_daegc_full_batch_loss_is_finite_and_decreases(phase):
    graph = tiny_graph()
    model = _daegc(graph, **phase)
    model.begin_epoch(0, graph)
    before, after = _loss_drop(model, GraphBatch.full(graph))
    assert after < before


@PHASES
def test_daegc_minibatch_loss_is_finite_and_decreases(phase):
    graph = tiny_graph(num_nodes=60)
    model = _daegc(graph, **phase)
    model.begin_epoch(0, graph)
    seeds = next(iter(model.seed_batches(graph, 24, torch.Generator().manual_seed(0))))
    batch = _sampled(graph, seeds)
    assert batch.seed_block().edge_index.shape[1] > 0
    before, after = _loss_drop(model, batch)
    assert after < before


def test_daegc_switches_to_joint_training_after_pretrain_epochs():
    graph = tiny_graph()
    batch = GraphBatch.full(graph)
    model = _daegc(graph, pretrain_epochs=2)
    for epoch in range(2):
        model.begin_epoch(epoch, graph)
        assert set(model.loss(batch).parts) == {"reconstruction"}
    assert bool((model.centres == 0).all())
    model.begin_epoch(2, graph)
    out = model.loss(batch)
    assert set(out.parts) == {"reconstruction", "clustering"}
    assert out.parts["clustering"] > 0
    # The centres come from k-means on the embeddings: each is a mean of unit rows.
    norms = model.centres.detach().norm(dim=1)
    assert bool((norms > 0).all()) and bool((norms <= 1 + 1e-5).all())


def test_daegc_target_refreshes_exactly_every_update_interval_steps():
    graph = tiny_graph()
    batch = GraphBatch.full(graph)
    model = _daegc(graph, update_interval=3)
    model.begin_epoch(0, graph)
    with torch.no_grad():
        model.loss(batch)  # initialises the centres; evaluation takes no step
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    targets, expected = [], []
    for _ in range(7):
        model.eval()
        with torch.no_grad():
            expected.append(sharpen(model(batch)))
        model.train()
        optimizer.zero_grad()
        model.loss(batch).loss.backward()
        optimizer.step()
        targets.append(model.target_distribution(batch))
    refreshed = [0, 3, 6]
    for step, target in enumerate(targets):
        last = max(r for r in refreshed if r <= step)
        # P in force after step t is the model's sharpened Q as of the last refresh.
        torch.testing.assert_close(target, expected[last])
    assert not torch.allclose(targets[2], targets[3])


def test_daegc_minibatch_target_is_computed_for_the_batch_seeds():
    graph = tiny_graph(num_nodes=60)
    model = _daegc(graph)
    model.begin_epoch(0, graph)
    first, second = list(model.seed_batches(graph, 24, torch.Generator().manual_seed(0)))[:2]
    model.loss(_sampled(graph, first)).loss.backward()  # initialises centres and the target
    batch = _sampled(graph, second)
    model.eval()
    with torch.no_grad():
        q = model(batch)
    model.train()
    p = model.target_distribution(batch)
    assert p.shape == (second.numel(), graph.num_classes)
    torch.testing.assert_close(p, sharpen(q))


def test_daegc_state_dict_round_trip_resumes_phase_centres_and_target():
    graph = tiny_graph()
    batch = GraphBatch.full(graph)
    model = _daegc(graph, pretrain_epochs=1, update_interval=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(4):
        model.begin_epoch(epoch, graph)
        optimizer.zero_grad()
        model.loss(batch).loss.backward()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = _daegc(graph, pretrain_epochs=1, update_interval=4)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(restored.centres, model.centres)
    # Step 3 of the joint phase: neither model refreshes, both use the target of step 0.
    torch.testing.assert_close(restored.loss(batch).loss, model.loss(batch).loss)
    torch.testing.assert_close(restored.loss(batch).loss, model.loss(batch).loss)


def test_daegc_sampled_reconstruction_estimates_the_dense_loss(monkeypatch):
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    z = torch.nn.functional.normalize(z, dim=1)
    edge_index = torch.randint(0, 50, (2, 120), generator=torch.Generator().manual_seed(1))
    edge_index = torch.unique(edge_index, dim=1)
    dense = reconstruction_loss(z, edge_index)
    monkeypatch.setattr(daegc_module, "DENSE_MAX_NODES", 10)
    generator = torch.Generator().manual_seed(2)
    estimates = torch.stack([reconstruction_loss(z, edge_index, generator) for _ in range(400)])
    assert not torch.allclose(estimates[0], dense)
    torch.testing.assert_close(estimates.mean(), dense, atol=3e-3, rtol=0)


def test_daegc_needs_a_cluster_count():
    graph = tiny_graph()
    with pytest.raises(UsageError, match="^n_clusters: "):
        DAEGC.from_settings(graph.num_features, graph.num_nodes, None, _settings())


def test_daegc_embeddings_are_unit_rows():
    graph = tiny_graph()
    z = _daegc(graph).embed(GraphBatch.full(graph))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(graph.num_nodes))
