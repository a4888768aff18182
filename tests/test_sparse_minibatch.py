"""Mini-batch training keeps bag-of-words features sparse: loader rows, first layer, gradients.

A sampled block of bag-of-words features is almost all zeros; the loader hands out CSR rows
and the first layer multiplies them sparsely, forward and backward. These tests pin that the
sparse path computes exactly what a densified block would, for every encoder type and every
trainable method, and that no dense ``[nodes, features]`` block is ever built.
"""

from __future__ import annotations

import copy

import pytest
import torch
from sampled_batches import tiny_graph

from agc_cli.data.graph import Graph, row_normalize
from agc_cli.engine.session import build_model
from agc_cli.models import Encoder, GraphBatch, SparseMatrix, convs, get_model_class
from agc_cli.models import sparse as sparse_module
from agc_cli.models.convs import GCNConv
from agc_cli.models.sparse import chain_matmul
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


def _sparse_with_duplicates(
    rows: int, cols: int, nnz: int, seed: int
) -> tuple[SparseMatrix, torch.Tensor]:
    """A random CSR matrix whose rows may repeat a column (the entries add up), leave rows
    empty, and list columns in any order; and its dense equivalent."""
    g = torch.Generator().manual_seed(seed)
    row = torch.randint(0, max(rows // 2, 1), (nnz,), generator=g) * 2  # odd rows empty
    col = torch.randint(0, cols, (nnz,), generator=g)
    values = torch.rand(nnz, generator=g)
    order = torch.argsort(row, stable=True)  # grouped by row, columns unsorted
    crow = torch.zeros(rows + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(row, minlength=rows), 0, out=crow[1:])
    matrix = SparseMatrix(crow, col[order], values[order], (rows, cols))
    dense = torch.zeros(rows, cols).index_put_((row, col), values, accumulate=True)
    return matrix, dense


@pytest.mark.parametrize("blocked", [False, True], ids=["whole", "column-blocks"])
@pytest.mark.parametrize("nnz", [0, 1, 300], ids=["all-zero", "one-entry", "duplicates"])
def test_chained_sparse_products_and_their_gradient_equal_dense_ones(monkeypatch, blocked, nnz):
    # A @ (X @ W): the GCN first layer on bag-of-words features, with empty rows in both
    # matrices, repeated columns within a row, and an all-zero X.
    if blocked:
        monkeypatch.setattr(sparse_module, "BLOCK_BYTES", 64 * 4 * 40)
        monkeypatch.setattr(sparse_module, "MIN_REUSE", 0)
    x, x_dense = _sparse_with_duplicates(40, 30, nnz, seed=0)
    a, a_dense = _sparse_with_duplicates(12, 40, 90, seed=1)
    weight = torch.randn(30, 150, generator=torch.Generator().manual_seed(2), requires_grad=True)
    out = chain_matmul([a, x], weight)
    expected = a_dense @ (x_dense @ weight)
    torch.testing.assert_close(out, expected)
    upstream = torch.randn(12, 150, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(out, weight, upstream)
    (want,) = torch.autograd.grad(expected, weight, upstream)
    torch.testing.assert_close(grad, want)
    if nnz == 0:
        assert not out.any() and not grad.any()


def test_chain_refuses_matrices_whose_shapes_do_not_chain():
    a, _ = _sparse_with_duplicates(4, 6, 5, seed=0)
    with pytest.raises(ValueError, match="do not chain"):
        chain_matmul([a, a], torch.ones(6, 2))


@pytest.mark.parametrize("cols", [30, 2**15, 2**15 + 1], ids=["int16", "int16-max", "int32"])
def test_transpose_equals_dense_transpose_for_every_key_width(cols):
    # The transpose sorts column ids in the narrowest integer type that holds them.
    matrix, dense = _sparse_with_duplicates(20, cols, 120, seed=4)
    if cols > 30:  # make the widest column id occur
        matrix.col[-1] = cols - 1
        dense = matrix.to_dense()
    crow, col, values = matrix.transpose()
    transposed = SparseMatrix(crow, col, values, (cols, 20)).to_dense()
    torch.testing.assert_close(transposed, dense.T)


def test_stacked_remapped_adjacency_computes_both_views_with_the_summed_gradient():
    a, a_dense = _sparse_with_duplicates(10, 25, 60, seed=5)
    perm = torch.randperm(25, generator=torch.Generator().manual_seed(0))
    both = a.stack_remapped(perm)
    assert both.shape == (20, 25)
    t = torch.randn(25, 7, requires_grad=True)
    out = both.matmul(t)
    expected = torch.cat([a_dense @ t, a_dense @ t[perm]])
    torch.testing.assert_close(out, expected)
    upstream = torch.randn(20, 7)
    (grad,) = torch.autograd.grad(out, t, upstream)
    (want,) = torch.autograd.grad(expected, t, upstream)
    torch.testing.assert_close(grad, want)


@pytest.mark.parametrize("remap_cost", [0, 10**9], ids=["stacked", "permute-rows"])
@pytest.mark.parametrize("gnn_type", GNN_TYPES)
@pytest.mark.parametrize("features", ["sparse", "dense"])
def test_forward_pair_equals_forward_on_features_and_on_permuted_features(
    monkeypatch, gnn_type, features, remap_cost
):
    # DGI's clean and corrupted embeddings from one call: equal to two plain passes, with
    # equal weight gradients, whichever way the first layer computes them.
    monkeypatch.setattr(convs, "REMAP_COST", remap_cost)
    graph = _sparse_graph()
    torch.manual_seed(0)
    encoder = Encoder(graph.num_features, 16, 2, gnn_type, heads=2 if gnn_type == "gat" else 1)
    sparse, dense = _sampled_pair(graph, layers=2)
    batch = sparse if features == "sparse" else dense
    perm = torch.randperm(batch.num_nodes, generator=torch.Generator().manual_seed(1))
    rows = dense.x[perm]
    permuted = batch.with_features(
        SparseMatrix.from_csr(rows.to_sparse_csr()) if features == "sparse" else rows
    )
    _assert_pair_is_two_passes(encoder, batch, perm, permuted)


def _assert_pair_is_two_passes(encoder, batch, perm, permuted, grad_atol_scale=None) -> None:
    """``encoder.forward_pair`` equals ``encoder`` on ``batch`` and on ``permuted`` (its
    features' rows in ``perm`` order), outputs and weight gradients of one loss of both."""
    pos, neg = encoder.forward_pair(batch.x, batch, perm)
    want_pos, want_neg = encoder(batch.x, batch), encoder(permuted.x, permuted)
    torch.testing.assert_close(pos, want_pos)
    torch.testing.assert_close(neg, want_neg)
    loss = (pos * neg.flip(0)).sum() + pos.square().sum()
    want = (want_pos * want_neg.flip(0)).sum() + want_pos.square().sum()
    grads, expected = _grads(encoder, loss), _grads(encoder, want)
    assert grads.keys() == expected.keys()
    tolerance = {}
    if grad_atol_scale is not None:  # relative to the largest gradient
        largest = max(float(g.abs().max()) for g in expected.values())
        tolerance = {"atol": grad_atol_scale * largest, "rtol": 1e-4}
    for name in grads:
        torch.testing.assert_close(grads[name], expected[name], msg=name, **tolerance)


@pytest.mark.parametrize("norm", ["none", "layer", "batch"])
@pytest.mark.parametrize("gnn_type", ["gcn", "sage"])
def test_forward_pair_equals_two_passes_in_full_batch_with_any_norm(gnn_type, norm):
    # Full-batch the two views are stacked as two copies of the whole graph (one hop); batch
    # norm keeps the views apart. Outputs and weight gradients equal two plain passes.
    graph = _sparse_graph()
    torch.manual_seed(0)
    encoder = Encoder(graph.num_features, 16, 3, gnn_type, norm=norm)
    batch = GraphBatch.full(graph)
    perm = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(1))
    dense = batch.x.to_dense()
    permuted = batch.with_features(SparseMatrix.from_csr(dense[perm].to_sparse_csr()))
    # A bias before batch norm has a zero gradient, in float32 rounding noise: an absolute
    # tolerance relative to the largest gradient (the noise reached 1.3e-6 of it with one
    # thread, where the summation order differs from two threads').
    _assert_pair_is_two_passes(encoder, batch, perm, permuted, grad_atol_scale=1e-5)


@pytest.mark.parametrize("normalization", ["rescale", "block", "subgraph"])
@pytest.mark.parametrize("jk", ["none", "cat", "max"])
@pytest.mark.parametrize("gnn_type", GNN_TYPES)
def test_stacked_views_equal_two_passes_on_a_three_hop_batch(gnn_type, jk, normalization):
    # Three layers with layer norm, residuals (not SAGE's root weight) and jumping knowledge:
    # the stacked pair equals two plain passes under every sampled normalisation.
    graph = _sparse_graph()
    torch.manual_seed(0)
    encoder = Encoder(
        graph.num_features, 16, 3, gnn_type, heads=2 if gnn_type == "gat" else 1,
        norm="layer", jk=jk, residual=gnn_type != "sage",
    )  # fmt: skip
    loader = make_loader(graph, None, [3, 3, 3], batch_size=8, shuffle=True, seed=4)
    batch = GraphBatch.from_sampled(next(iter(loader)), graph, normalization=normalization)
    assert len(batch.num_sampled_nodes) == 4 and batch.num_sampled_nodes[3] > 0
    perm = torch.randperm(batch.num_nodes, generator=torch.Generator().manual_seed(2))
    permuted = batch.with_features(SparseMatrix.from_csr(batch.x.to_dense()[perm].to_sparse_csr()))
    _assert_pair_is_two_passes(encoder, batch, perm, permuted)


def test_batch_norm_keeps_the_two_pass_path(monkeypatch):
    # Batch norm's statistics must not mix the views: no stacked pass then; with layer norm
    # the stacked pass is taken.
    graph = _sparse_graph()
    batch, _ = _sampled_pair(graph, layers=2)
    perm = torch.randperm(batch.num_nodes, generator=torch.Generator().manual_seed(1))
    calls = []
    original = Encoder._stacked_pair

    def recording(self, *args):
        calls.append(self.norms[0].__class__.__name__)
        return original(self, *args)

    monkeypatch.setattr(Encoder, "_stacked_pair", recording)
    for norm in ("batch", "layer"):
        Encoder(graph.num_features, 16, 2, "gcn", norm=norm).forward_pair(batch.x, batch, perm)
    assert calls == ["LayerNorm"]


def test_an_unknown_normalisation_is_refused():
    graph = _sparse_graph()
    data = next(iter(make_loader(graph, None, [4], batch_size=16, shuffle=True, seed=3)))
    with pytest.raises(ValueError, match="normalization"):
        GraphBatch.from_sampled(data, graph, normalization="blocks")


def test_pair_layout_keeps_every_layers_destinations_of_both_views_first():
    graph = _sparse_graph()
    batch, _ = _sampled_pair(graph, layers=3)
    layout = batch.pair_layout(3)
    sizes = batch.num_sampled_nodes[:4]
    index = layout.index
    # A permutation of two copies of the nodes.
    assert torch.equal(index.flatten().sort().values, torch.arange(2 * sum(sizes)))
    for depth in range(1, 4):  # the destinations of layers 2, 1, 0: hops below ``depth``
        inner = sum(sizes[:depth])
        assert int(index[:, :inner].max()) == 2 * inner - 1
        order = layout.order(inner)
        assert torch.equal(order.sort().values, torch.arange(2 * inner))
        # Stacked row r holds row order[r] of [view 0; view 1].
        views = torch.cat([torch.arange(inner), torch.arange(inner) + 10_000])
        stacked = views[order]
        assert torch.equal(stacked[index[0, :inner]], torch.arange(inner))
        assert torch.equal(stacked[index[1, :inner]], torch.arange(inner) + 10_000)


def test_gcn_on_sparse_features_never_materialises_the_transform(monkeypatch):
    # The first GCN layer of a sampled bag-of-words batch is one chained product A (X W): the
    # [sources, hidden] transform X W is never built (DGI's pair included).
    def refuse(self, x):
        raise AssertionError("transform computed")

    monkeypatch.setattr(GCNConv, "transform", refuse)
    graph = _sparse_graph()
    torch.manual_seed(0)
    model = get_model_class("dgi").from_settings(
        graph.num_features, graph.num_nodes, graph.num_classes,
        Settings(hidden_channels=16, num_layers=1, model="dgi"),
    )  # fmt: skip
    sparse, _ = _sampled_pair(graph, layers=1)
    model.loss(sparse).loss.backward()
    assert model.encoder.convs[0].weight.grad is not None
    assert model.encoder(sparse.x, sparse).shape == (sparse.batch_size, 16)


def test_sparse_feature_rows_of_empty_rows_and_of_no_rows():
    words = torch.zeros(6, 5)
    words[2, 1] = words[2, 4] = words[5, 0] = 1.0
    graph = Graph.from_edge_index(
        "empty-rows", torch.tensor([[0, 1], [1, 2]]), 6, words.to_sparse_csr()
    )
    index = torch.tensor([0, 2, 3, 5, 2])
    rows = graph.sparse_feature_rows(index)
    assert torch.equal(rows.to_dense(), words[index])
    assert torch.equal(rows.crow_indices(), torch.tensor([0, 0, 2, 2, 3, 5]))
    none = graph.sparse_feature_rows(torch.tensor([0, 3], dtype=torch.long))
    assert none.values().numel() == 0 and none.shape == (2, 5)
    assert graph.sparse_feature_rows(torch.empty(0, dtype=torch.long)).shape == (0, 5)
    assert torch.equal(graph.feature_rows(index), words[index])


def test_gcn_upper_layers_propagate_before_transforming_with_equal_outputs_and_gradients():
    # Above the first layer a sampled batch has far fewer destinations than sources, so
    # (A h) W replaces A (h W); the first layer keeps A (X W) for sparse and dense X alike.
    graph = _sparse_graph()
    torch.manual_seed(0)
    encoder = Encoder(graph.num_features, 16, 2, "gcn")
    assert [conv.reassociate for conv in encoder.convs] == [False, True]
    reference = copy.deepcopy(encoder)
    reference.convs[1].reassociate = False
    sparse, _ = _sampled_pair(graph, layers=2)
    assert sparse.block(1, 2).num_dst < sparse.block(1, 2).num_src

    def refuse(x):
        raise AssertionError("transformed every source")

    encoder.convs[1].transform = refuse
    z, want = encoder(sparse.x, sparse), reference(sparse.x, sparse)
    torch.testing.assert_close(z, want)
    grads, expected = _grads(encoder, z.square().sum()), _grads(reference, want.square().sum())
    assert grads.keys() == expected.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected[name], msg=name)
