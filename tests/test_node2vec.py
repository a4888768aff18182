"""Node2Vec: p/q-biased walks, the skip-gram objective, and training (mini-batch, resumed)
through the real trainer and the CLI."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_agc
from sampled_batches import sample_batch, tiny_graph
from test_resume import assert_same_weights, interrupted_then_resumed, uninterrupted

from agc_cli.data.graph import Graph
from agc_cli.engine.inference import layerwise
from agc_cli.engine.optim import JointOptimizer
from agc_cli.engine.session import build_model, open_session, train
from agc_cli.engine.trainer import build_optimizer
from agc_cli.errors import UsageError
from agc_cli.models import GraphBatch
from agc_cli.settings import Settings, load_settings

# Two planted communities, 150 nodes each, 90% of the edges inside them.
TWO_COMMUNITIES = "sbm:nodes=300,clusters=2,degree=8,homophily=0.9,features=4,snr=1,seed=3"


def _model(graph: Graph, **values):
    torch.manual_seed(0)
    settings = Settings(**{"hidden_channels": 16, **values, "model": "node2vec"})
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    model.generator = torch.Generator().manual_seed(1)
    return model, settings


def _seed_batch(graph: Graph, seeds: list[int]) -> GraphBatch:
    return GraphBatch.from_sampled(sample_batch(graph, torch.tensor(seeds), 1), graph)


# ----- walks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("p", "q"), [(2.0, 0.5), (0.25, 4.0), (1.0, 1.0)])
def test_second_step_frequencies_are_one_over_p_one_and_one_over_q(p, q):
    # Walks 0 -> 1 -> ?: node 1's neighbours are 0 (the previous node, weight 1/p), 2 (also a
    # neighbour of 0, weight 1) and 3 (two steps from 0, weight 1/q). Node 0's first step is
    # uniform over {1, 2}, so about half the walks pass 0 -> 1.
    edges = torch.tensor([[0, 0, 1, 1], [1, 2, 2, 3]])
    graph = Graph.from_edge_index("pq", edges, 4, torch.zeros(4, 1))
    model, _ = _model(graph, num_walks=40_000, walk_length=2, context_size=3, walk_p=p, walk_q=q)
    model.begin_epoch(0, graph)
    walks = model.walks(_seed_batch(graph, [0]))
    assert walks.shape == (40_000, 3) and (walks[:, 0] == 0).all()
    after = walks[walks[:, 1] == 1, 2]
    observed = torch.stack([(after == v).float().mean() for v in (0, 2, 3)])
    weights = torch.tensor([1 / p, 1.0, 1 / q])
    # About 20,000 draws: the standard error of each share is below 0.004.
    torch.testing.assert_close(observed, weights / weights.sum(), atol=0.015, rtol=0)


def test_windows_slide_over_the_walks_and_negatives_keep_the_centre():
    graph = tiny_graph(num_nodes=60)
    model, _ = _model(graph, num_walks=3, walk_length=5, context_size=4, negatives=2)
    model.begin_epoch(0, graph)
    batch = _seed_batch(graph, [4, 17, 33])
    state = model.generator.get_state()
    walks = model.walks(batch)
    model.generator.set_state(state)
    positive, negative = model.windows(batch)
    # 6-node walks, 4-node windows: 3 windows per walk, each the walk's nodes j .. j + 3.
    assert positive.shape == (3 * 3 * 3, 4) and negative.shape == (2 * 27, 4)
    expected = torch.stack([walks[:, j : j + 4] for j in range(3)], dim=1).reshape(-1, 4)
    assert torch.equal(positive, expected)
    assert torch.equal(negative[:, 0], positive[:, 0].repeat(2))
    assert 0 <= int(negative.min()) and int(negative.max()) < graph.num_nodes


def test_context_size_longer_than_the_walk_is_a_usage_error():
    graph = tiny_graph()
    with pytest.raises(UsageError, match="^context_size: "):
        _model(graph, walk_length=3, context_size=5)


# ----- objective -------------------------------------------------------------------------------


def test_table_gets_sparse_gradients_and_sparse_adam_alone():
    graph = tiny_graph(num_nodes=60)
    model, settings = _model(graph, num_walks=2, walk_length=3, context_size=3)
    model.begin_epoch(0, graph)
    batch = _seed_batch(graph, [0, 7, 13])
    state = model.generator.get_state()
    model.loss(batch).loss.backward()
    grad = model.encoder.table.weight.grad
    assert grad.is_sparse
    model.generator.set_state(state)
    used = torch.unique(torch.cat([w.reshape(-1) for w in model.windows(batch)]))
    assert torch.equal(torch.unique(grad.coalesce().indices()[0]), used)
    optimizer = build_optimizer(model, settings, "cpu")
    assert isinstance(optimizer, JointOptimizer) and list(optimizer.optimizers) == ["sparse"]
    before = model.encoder.table.weight.detach().clone()
    optimizer.step()
    moved = (model.encoder.table.weight != before).any(dim=1).nonzero().view(-1)
    assert torch.equal(moved, used)


def test_loss_is_the_log_sigmoid_of_positive_and_negative_pairs():
    graph = tiny_graph(num_nodes=60)
    model, _ = _model(graph, num_walks=2, walk_length=4, context_size=3, negatives=2)
    model.begin_epoch(0, graph)
    batch = _seed_batch(graph, [1, 2, 3, 5])
    state = model.generator.get_state()
    out = model.loss(batch)
    model.generator.set_state(state)
    positive, negative = model.windows(batch)
    table = model.encoder.table.weight.detach().double()  # 1 - σ(s) is exact enough in float64

    def pair_scores(windows):
        return torch.stack(
            [table[w[0]] @ table[w[k]] for w in windows.tolist() for k in range(1, 3)]
        )

    pos = -torch.log(torch.sigmoid(pair_scores(positive))).mean()
    neg = -torch.log(1 - torch.sigmoid(pair_scores(negative))).mean()
    torch.testing.assert_close(out.loss.double(), pos + neg)
    torch.testing.assert_close(out.parts["positive"].double(), pos)


def test_training_lowers_the_loss_and_pulls_co_occurring_nodes_together():
    settings = load_settings({"dataset": TWO_COMMUNITIES, "model": "node2vec",
                              "hidden_channels": 16, "epochs": 15, "batch_size": 64,
                              "lr": 0.05, "patience": 0, "save_every": 0})  # fmt: skip
    session = open_session(settings)
    graph = session.graph

    def similarity() -> tuple[float, float, float]:
        """Mean cosine over edges, same-community pairs and cross-community pairs."""
        z = F.normalize(session.model.encoder.table.weight.detach(), dim=1)
        cos = z @ z.T
        same = graph.y[:, None] == graph.y[None, :]
        edges = cos[graph.row, graph.col()].mean()
        return float(edges), float(cos[same].mean()), float(cos[~same].mean())

    edge0, same0, cross0 = similarity()
    assert abs(edge0) < 0.1 and abs(same0 - cross0) < 0.05  # a random start
    _, result = train(session, None)
    losses = [h["loss"] for h in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.6 * losses[0]
    edge, same, cross = similarity()
    assert edge > 0.4 and same > cross + 0.3  # about 0.49, and 0.26 against -0.21


def test_embeddings_are_the_table_rows_and_layerwise_inference_is_refused():
    graph = tiny_graph()
    model, _ = _model(graph)
    full = model.embed(GraphBatch.full(graph))
    assert torch.equal(full, model.encoder.table.weight)
    batch = _seed_batch(graph, [9, 2, 30])
    assert torch.equal(model.embed(batch), full[[9, 2, 30]])
    with pytest.raises(UsageError, match="^force_full_batch_inference: node2vec"):
        layerwise(model.eval(), graph, torch.device("cpu"), 8)
    with pytest.raises(UsageError, match="^force_full_batch_inference: node2vec"):
        _model(graph, mini_batch=True)


# ----- through the trainer and the CLI ---------------------------------------------------------


def test_resumed_mini_batch_run_matches_uninterrupted_run(tmp_path):
    # Mid-epoch (5 batches per epoch): the table and SparseAdam's moments continue exactly.
    over = {"model": "node2vec", "mini_batch": True, "epochs": 2, "num_layers": 1,
            "fan_out": 1, "num_walks": 2, "walk_length": 4, "context_size": 3}  # fmt: skip
    expected = uninterrupted(tmp_path, **over)
    got = interrupted_then_resumed(tmp_path, 7, "signal", **over)
    assert_same_weights(expected, got)


def test_agc_train_then_resume_mini_batch_and_checkpoints_load_weights_only(capsys, tmp_path):
    run = tmp_path / "run"
    r = run_agc(capsys, "train", "--model", "node2vec", "--dataset", TWO_COMMUNITIES,
                "--hidden-channels", "8", "--epochs", "2", "--mini-batch", "--batch-size", "100",
                "--run-dir", str(run))  # fmt: skip
    assert r.code == 0, r.err
    assert "mode: mini-batch" in r.err
    r = run_agc(capsys, "resume", str(run), "--epochs", "3")
    assert r.code == 0, r.err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    for path in sorted((run / "checkpoints").glob("*.pt")):
        state = torch.load(path, weights_only=True)
        assert state["model"]["encoder.table.weight"].shape == (300, 8)
        assert set(state["optimizer"]) == {"sparse"}
