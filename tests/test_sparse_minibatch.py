"""Mini-batch training keeps bag-of-words features sparse: loader rows, first layer, gradients.

A sampled block of bag-of-words features is almost all zeros; the loader hands out CSR rows
and the first layer multiplies them sparsely, forward and backward. These tests pin that the
sparse path computes exactly what a densified block would, for every encoder type and every
trainable method, and that no dense ``[nodes, features]`` block is ever built.
"""

from __future__ import annotations

import pytest
import torch
from sampled_batches import tiny_graph

from agc_cli.data.graph import Graph, row_normalize
from agc_cli.engine.session import build_model
from agc_cli.models import Encoder, GraphBatch, SparseMatrix, get_model_class
from agc_cli.models import sparse as sparse_module
from agc_cli.sampling.loader import make_loader
from agc_cli.settings import Settings

GNN_TYPES = ["gcn", "sage", "gat", "gatv2", "gin"]
METHODS = [
    "dgi", "gae", "ccassg", "dmon", "magi", "daegc", "ns4gc", "dinknet", "gbt", "vgae",
    "mincut",
]  # fmt: skip


def _sparse_graph(num_nodes: int = 80, num_features: int = 60) -> Graph:
    graph = tiny_graph(num_nodes=num_nodes, num_features=num_features, sparse=True, seed=1)
    assert graph.sparse_features
    return graph


def _sampled_pair(graph: Graph, layers: int) -> tuple[GraphBatch, GraphBatch]:
    """One batch of the real loader, as sampled (sparse rows) and with its rows densified."""
    loader = make_loader(graph, None, [4] * layers, batch_size=16, shuffle=True, seed=3)
    data = next(iter(loader))
    assert data.x.layout == torch.sparse_csr
    sparse = GraphBatch.from_sampled(data, graph)
    assert isinstance(sparse.x, SparseMatrix)
    dense = sparse.with_features(sparse.x.to_dense())
    return sparse, dense


def _grads(module: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    return {n: g for (n, _), g in zip(params, grads, strict=True) if g is not None}


@pytest.mark.parametrize("gnn_type", GNN_TYPES)
def test_minibatch_sparse_and_dense_first_layer_give_equal_outputs_and_weight_gradients(
    gnn_type,
):
    graph = _sparse_graph()
    torch.manual_seed(0)
    encoder = Encoder(
        graph.num_features, 16, 2, gnn_type, heads=2 if gnn_type == "gat" else 1,
        residual=gnn_type != "sage",
    )  # fmt: skip
    sparse, dense = _sampled_pair(graph, layers=2)
    z_sparse = encoder(sparse.x, sparse)
    z_dense = encoder(dense.x, dense)
    assert z_sparse.shape == (sparse.batch_size, 16)
    torch.testing.assert_close(z_sparse, z_dense)
    g_sparse = _grads(encoder, z_sparse.square().sum())
    g_dense = _grads(encoder, z_dense.square().sum())
    assert "convs.0.weight" in g_sparse
    assert g_sparse.keys() == g_dense.keys()
    for name in g_sparse:
        torch.testing.assert_close(g_sparse[name], g_dense[name], msg=name)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_gets_equal_loss_and_gradients_from_sparse_and_dense_batches(name):
    graph = _sparse_graph()
    torch.manual_seed(0)
    settings = Settings(hidden_channels=16, num_layers=2, model=name)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    sparse, dense = _sampled_pair(graph, layers=2)
    results = []
    for batch in (sparse, dense):
        # The same draws (corruptions, augmentations such as CCA-SSG's feature masks).
        model.generator = torch.Generator().manual_seed(7)
        loss = model.loss(batch).loss
        results.append((loss, _grads(model, loss)))
    (loss_s, grads_s), (loss_d, grads_d) = results
    torch.testing.assert_close(loss_s, loss_d)
    assert grads_s.keys() == grads_d.keys()
    for param in grads_s:
        torch.testing.assert_close(grads_s[param], grads_d[param], msg=param)


def test_sampled_batches_never_build_a_dense_feature_block(monkeypatch):
    graph = _sparse_graph()
    calls = []
    monkeypatch.setattr(SparseMatrix, "to_dense", lambda self: calls.append(self))
    monkeypatch.setattr(Graph, "feature_rows", lambda self, index: calls.append(index))
    torch.manual_seed(0)
    model = get_model_class("dgi").from_settings(
        graph.num_features, graph.num_nodes, graph.num_classes,
        Settings(hidden_channels=16, num_layers=2, model="dgi"),
    )  # fmt: skip
    for data in make_loader(graph, None, [4, 4], batch_size=32, shuffle=True, seed=0):
        batch = GraphBatch.from_sampled(data, graph)
        model.loss(batch).loss.backward()
    assert calls == []


def test_column_blocked_product_and_its_gradient_equal_dense_ones(monkeypatch):
    # Small block size so a test-sized operand takes the blocked CPU path (several blocks,
    # a ragged last one).
    monkeypatch.setattr(sparse_module, "BLOCK_BYTES", 64 * 4 * 40)
    monkeypatch.setattr(sparse_module, "MIN_REUSE", 1)
    g = torch.Generator().manual_seed(0)
    words = (torch.rand(50, 40, generator=g) < 0.2).float()
    x = row_normalize(words.to_sparse_csr())
    matrix = SparseMatrix.from_csr(x)
    weight = torch.randn(40, 100, generator=g, requires_grad=True)
    assert sparse_module._column_block(40 * 4, 100) < 100
    out = matrix.matmul(weight)
    expected = x.to_dense() @ weight
    torch.testing.assert_close(out, expected)
    upstream = torch.randn(50, 100, generator=g)
    (grad,) = torch.autograd.grad(out, weight, upstream)
    torch.testing.assert_close(grad, x.to_dense().T @ upstream)


def test_sparse_feature_rows_reads_only_the_requested_rows_in_order():
    graph = _sparse_graph()
    index = torch.tensor([5, 0, 5, 79, 12])
    rows = graph.sparse_feature_rows(index)
    assert rows.layout == torch.sparse_csr and rows.values().dtype == torch.float32
    dense = graph.x.to_dense()[index]
    assert torch.equal(rows.to_dense(), dense)
    assert rows.values().numel() == int((dense != 0).sum())
