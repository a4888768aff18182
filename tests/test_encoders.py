"""Encoders, convs, sparse products and batches: shapes, option checks and exactness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sampled_batches import sample_batch, tiny_graph
from torch import nn
from torch_geometric import nn as pyg_nn

from agc_cli.errors import UsageError
from agc_cli.models import Block, Encoder, GraphBatch, SparseMatrix, convs
from agc_cli.models.convs import GATConv, GATv2Conv, GCNConv, GINConv, SAGEConv
from agc_cli.models.encoder import PReLU

GNN_TYPES = ["gcn", "sage", "gat", "gatv2", "gin"]


def _encoder(gnn_type: str, in_channels: int, **options) -> Encoder:
    options.setdefault("heads", 2 if gnn_type == "gat" else 1)
    torch.manual_seed(0)
    return Encoder(
        in_channels, options.pop("hidden", 8), options.pop("layers", 2), gnn_type, **options
    )


def _randomise_norms(encoder: Encoder) -> None:
    """Non-trivial running statistics, so eval-mode batch norm is not the identity."""
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)


OPTIONS = [
    {},
    {"norm": "batch", "dropout": 0.5},
    {"norm": "layer", "activation": "elu"},
    {"residual": True},
    {"jk": "cat", "layers": 3},
    {"jk": "max", "layers": 3},
    {"plain_last": True, "jk": "last"},
]


@pytest.mark.parametrize(
    "gnn_type, options",
    # sage refuses residual (see test_bad_option_raises_usage_error_naming_it)
    [(t, o) for t in GNN_TYPES for o in OPTIONS if not (t == "sage" and o.get("residual"))],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()) or "-",
)
def test_output_shape_for_every_gnn_type_and_option(gnn_type, options):
    graph = tiny_graph()
    encoder = _encoder(gnn_type, graph.num_features, **options)
    z = encoder(graph.x, GraphBatch.full(graph))
    layers = options.get("layers", 2)
    width = 8 * layers if options.get("jk") == "cat" else 8
    assert encoder.out_channels == width
    assert z.shape == (graph.num_nodes, width)
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("concat, heads", [(True, 2), (True, 4), (False, 3)])
def test_gat_heads_concatenated_or_averaged_keep_hidden_width(concat, heads):
    graph = tiny_graph()
    encoder = Encoder(graph.num_features, 12, 2, "gat", heads=heads, concat=concat)
    assert encoder.convs[0].heads == heads
    assert encoder.convs[0].head_channels == (12 // heads if concat else 12)
    assert encoder(graph.x, GraphBatch.full(graph)).shape == (graph.num_nodes, 12)


@pytest.mark.parametrize(
    "gnn_type, options, option",
    [
        ("gcn", {"heads": 2}, "heads"),
        ("sage", {"heads": 4}, "heads"),
        ("gin", {"concat": False}, "concat"),
        ("sage", {"residual": True}, "residual"),
        ("gat", {"heads": 3, "hidden": 8}, "heads"),
        ("gcn", {"jk": "cat", "layers": 1}, "jk"),
        ("gcn", {"norm": "batch", "layers": 1, "plain_last": True}, "norm"),
        ("gcn", {"activation": "swish"}, "activation"),
        ("gcn", {"norm": "group"}, "norm"),
        ("gcn", {"jk": "lstm"}, "jk"),
        ("gcnii", {}, "gnn_type"),
        ("gcn", {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_option_raises_usage_error_naming_it(gnn_type, options, option):
    with pytest.raises(UsageError, match=rf"^{option}: "):
        Encoder(5, options.pop("hidden", 8), options.pop("layers", 2), gnn_type, **options)


def test_heads_error_says_it_only_applies_to_gat():
    with pytest.raises(UsageError, match="heads: only applies to gnn_type gat"):
        Encoder(5, 8, 2, "gcn", heads=2)


@pytest.mark.parametrize("gnn_type", GNN_TYPES)
def test_sparse_and_dense_features_give_the_same_output_and_gradients(gnn_type):
    dense, sparse = tiny_graph(), tiny_graph(sparse=True)
    encoder = _encoder(gnn_type, dense.num_features, residual=gnn_type != "sage")
    z_dense = encoder(dense.x, GraphBatch.full(dense))
    grad_dense = torch.autograd.grad(z_dense.square().sum(), encoder.convs[0].weight)[0]
    batch = GraphBatch.full(sparse)
    assert isinstance(batch.x, SparseMatrix)
    z_sparse = encoder(batch.x, batch)
    grad_sparse = torch.autograd.grad(z_sparse.square().sum(), encoder.convs[0].weight)[0]
    torch.testing.assert_close(z_sparse, z_dense)
    torch.testing.assert_close(grad_sparse, grad_dense)


@pytest.mark.parametrize("gnn_type", GNN_TYPES)
def test_layer_forward_composition_equals_forward_in_eval_mode(gnn_type):
    graph = tiny_graph(sparse=True)
    encoder = _encoder(
        gnn_type, graph.num_features, layers=3, norm="batch", jk="cat", dropout=0.3,
        residual=gnn_type != "sage",
    )  # fmt: skip
    _randomise_norms(encoder)
    encoder.eval()
    batch = GraphBatch.full(graph)
    outputs, x = [], batch.x
    for i in range(encoder.num_layers):
        x = encoder.layer_forward(i, x, batch.block(i, encoder.num_layers))
        outputs.append(x)
    torch.testing.assert_close(encoder.combine(outputs), encoder(batch.x, batch))


@pytest.mark.parametrize("gnn_type", GNN_TYPES)
def test_layerwise_inference_over_one_hop_chunks_equals_full_forward(gnn_type):
    """The recipe in the encoder's docstring: every node through layer i in chunks."""
    graph = tiny_graph(sparse=True)
    encoder = _encoder(gnn_type, graph.num_features, layers=2, jk="max", norm="layer")
    encoder.eval()
    outputs = []
    with torch.no_grad():
        for i in range(encoder.num_layers):
            h = torch.empty(graph.num_nodes, encoder.hidden_channels)
            for chunk in torch.arange(graph.num_nodes).split(7):
                data = sample_batch(graph, chunk, 1, with_x=False)
                b = GraphBatch.from_sampled(data, graph, normalization="rescale")
                x_src = b.x if i == 0 else outputs[-1][b.n_id]
                h[b.n_id[: b.batch_size]] = encoder.layer_forward(i, x_src, b.block(0, 1))
            outputs.append(h)
        expected = encoder(GraphBatch.full(graph).x, GraphBatch.full(graph))
    torch.testing.assert_close(encoder.combine(outputs), expected)


@pytest.mark.parametrize("gnn_type", GNN_TYPES)
@pytest.mark.parametrize("with_x", [True, False], ids=["data.x", "gathered"])
def test_trimmed_minibatch_forward_equals_full_forward_on_seeds(gnn_type, with_x):
    graph = tiny_graph(sparse=True)
    encoder = _encoder(
        gnn_type, graph.num_features, layers=2, norm="batch", jk="cat",
        residual=gnn_type != "sage",
    )  # fmt: skip
    _randomise_norms(encoder)
    encoder.eval()
    full = GraphBatch.full(graph)
    seeds = torch.tensor([17, 3, 29, 8])
    data = sample_batch(graph, seeds, 2, with_x=with_x)
    batch = GraphBatch.from_sampled(data, graph, normalization="rescale")
    z = encoder(batch.x, batch)
    assert z.shape == (4, encoder.out_channels)
    torch.testing.assert_close(z, encoder(full.x, full)[seeds])


@pytest.mark.parametrize("layers", [1, 2])
def test_subgraph_normalisation_is_pyg_gcn_on_the_sampled_subgraph(layers):
    """``normalization="subgraph"``: each layer is PyG's GCNConv (gcn_norm with self-loops)
    run on the whole sampled subgraph, read at the nodes the trimmed layer computes."""
    data, batch, encoder = _sampled_gcn(layers, "subgraph")
    h = data.x
    for i in range(layers):
        h = encoder.acts[i](_pyg_gcn(encoder, i)(h, data.edge_index))
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch.x, batch), h[: batch.batch_size].detach())


@pytest.mark.parametrize("layers", [1, 2])
def test_block_normalisation_is_pyg_gcn_on_each_layers_block(layers):
    """``normalization="block"``: layer ``i`` is PyG's GCNConv on that layer's trimmed block
    alone (its sources as the nodes: those that are not destinations have no in-edges, only
    their self-loop)."""
    data, batch, encoder = _sampled_gcn(layers, "block")
    h = data.x
    for i in range(layers):
        block = batch.block(i, layers)
        out = _pyg_gcn(encoder, i)(h[: block.num_src], block.edge_index)
        h = encoder.acts[i](out[: block.num_dst])
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch.x, batch), h.detach())
    rescaled = GraphBatch.from_sampled(data, tiny_graph(), normalization="rescale")
    with torch.no_grad():
        assert not torch.allclose(encoder(batch.x, batch), encoder(rescaled.x, rescaled))


def _sampled_gcn(layers: int, normalization: str):
    """A sampled batch of 4 seeds (fan-out 2) of the tiny graph with ``normalization``, and a
    GCN encoder in eval mode."""
    graph = tiny_graph()
    generator = torch.Generator().manual_seed(0)
    data = sample_batch(graph, torch.tensor([17, 3, 29, 8]), layers, fan_out=2,
                        generator=generator)  # fmt: skip
    batch = GraphBatch.from_sampled(data, graph, normalization=normalization)
    return data, batch, _encoder("gcn", graph.num_features, layers=layers).eval()


def _pyg_gcn(encoder: Encoder, i: int):
    from torch_geometric.nn import GCNConv as PyGGCNConv

    conv = encoder.convs[i]
    reference = PyGGCNConv(conv.weight.shape[0], conv.weight.shape[1])
    reference.lin.weight.data = conv.weight.data.T.clone()
    reference.bias.data = conv.bias.data.clone()
    return reference


@pytest.mark.parametrize("gnn_type", GNN_TYPES)
def test_sampled_forward_with_small_fan_out_is_finite_and_seed_sized(gnn_type):
    graph = tiny_graph()
    encoder = _encoder(gnn_type, graph.num_features, layers=2)
    data = sample_batch(graph, torch.arange(5), 2, fan_out=2, generator=torch.Generator())
    batch = GraphBatch.from_sampled(data, graph)
    z = encoder(batch.x, batch)
    assert z.shape == (5, 8) and torch.isfinite(z).all()


def test_block_trimming_follows_per_hop_counts():
    graph = tiny_graph()
    data = sample_batch(graph, torch.tensor([0, 1, 2]), 2)
    batch = GraphBatch.from_sampled(data, graph)
    n, e = data.num_sampled_nodes, data.num_sampled_edges
    outer, inner = batch.block(0, 2), batch.block(1, 2)
    assert (outer.num_dst, outer.num_src, outer.edge_index.shape[1]) == (
        n[0] + n[1],
        sum(n),
        e[0] + e[1],
    )
    assert (inner.num_dst, inner.num_src, inner.edge_index.shape[1]) == (n[0], n[0] + n[1], e[0])
    for block in (outer, inner):
        assert int(block.edge_index[1].max()) < block.num_dst
        assert int(block.edge_index[0].max()) < block.num_src
    with pytest.raises(UsageError, match="^num_layers: "):
        batch.block(0, 3)


def test_seed_block_keeps_edges_between_seeds_with_full_sampled_degree():
    graph = tiny_graph()
    seeds = torch.arange(0, 40, 2)
    batch = GraphBatch.from_sampled(sample_batch(graph, seeds, 1), graph)
    block = batch.seed_block()
    assert (block.edge_index < seeds.numel()).all()
    adjacency = graph.edge_index()
    is_seed = torch.zeros(graph.num_nodes, dtype=torch.bool)
    is_seed[seeds] = True
    expected = int((is_seed[adjacency[0]] & is_seed[adjacency[1]]).sum())
    assert block.edge_index.shape[1] == expected
    torch.testing.assert_close(block.sampled_degree, graph.degree()[seeds].float())


def test_drop_edges_updates_degrees_and_per_hop_counts():
    graph = tiny_graph()
    batch = GraphBatch.from_sampled(sample_batch(graph, torch.arange(4), 2), graph)
    view = batch.drop_edges(0.5, torch.Generator().manual_seed(0))
    assert sum(view.num_sampled_edges) == view.edge_index.shape[1] < batch.edge_index.shape[1]
    removed = batch.degree - view.degree
    assert removed.sum() == batch.edge_index.shape[1] - view.edge_index.shape[1]
    full = GraphBatch.full(graph).drop_edges(0.3, torch.Generator().manual_seed(0))
    counted = torch.bincount(full.edge_index[1], minlength=graph.num_nodes).float()
    torch.testing.assert_close(full.degree, counted)


def _pyg_input(graph):
    return graph.x, graph.edge_index(), Block(graph.edge_index(), graph.num_nodes, graph.degree())


def test_gcn_conv_matches_pyg():
    x, edge_index, block = _pyg_input(tiny_graph())
    ours = GCNConv(x.shape[1], 6)
    ref = pyg_nn.GCNConv(x.shape[1], 6)
    with torch.no_grad():
        ref.lin.weight.copy_(ours.weight.T)
        ref.bias.copy_(torch.randn(6))
        ours.bias.copy_(ref.bias)
    torch.testing.assert_close(ours(x, block), ref(x, edge_index))


def test_sage_conv_matches_pyg():
    x, edge_index, block = _pyg_input(tiny_graph())
    ours = SAGEConv(x.shape[1], 6)
    ref = pyg_nn.SAGEConv(x.shape[1], 6)
    with torch.no_grad():
        ref.lin_l.weight.copy_(ours.weight_part("lin").T)
        ref.lin_l.bias.copy_(ours.bias)
        ref.lin_r.weight.copy_(ours.weight_part("root").T)
    torch.testing.assert_close(ours(x, block), ref(x, edge_index))


def test_gin_conv_matches_pyg():
    x, edge_index, block = _pyg_input(tiny_graph())
    ours = GINConv(x.shape[1], 6, nn.ReLU())
    mlp = nn.Sequential(nn.Linear(x.shape[1], 6), nn.ReLU(), nn.Linear(6, 6))
    ref = pyg_nn.GINConv(mlp)  # re-initialises the MLP: copy our weights afterwards
    with torch.no_grad():
        mlp[0].weight.copy_(ours.weight_part("lin").T)
        mlp[0].bias.copy_(ours.bias)
        mlp[2].load_state_dict(ours.lin2.state_dict())
    torch.testing.assert_close(ours(x, block), ref(x, edge_index))


@pytest.mark.parametrize("concat", [True, False])
def test_gat_conv_matches_pyg(concat):
    x, edge_index, block = _pyg_input(tiny_graph())
    ours = GATConv(x.shape[1], 4, heads=3, concat=concat, residual=True)
    ref = pyg_nn.GATConv(x.shape[1], 4, heads=3, concat=concat, residual=True)
    with torch.no_grad():
        ref.lin.weight.copy_(ours.weight_part("lin").T)
        ref.res.weight.copy_(ours.weight_part("residual").T)
        ref.att_src.copy_(ours.att_src)
        ref.att_dst.copy_(ours.att_dst)
        ours.bias.copy_(torch.randn_like(ours.bias))
        ref.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x, block), ref(x, edge_index))


def test_sparse_matrix_product_and_gradient_match_dense():
    torch.manual_seed(0)
    dense = torch.rand(7, 5) * (torch.rand(7, 5) < 0.4)
    matrix = SparseMatrix.from_csr(dense.to_sparse_csr())
    b = torch.randn(5, 3, requires_grad=True)
    out = matrix.matmul(b)
    torch.testing.assert_close(out, dense @ b)
    (grad,) = torch.autograd.grad(out.sin().sum(), b)
    (expected,) = torch.autograd.grad((dense @ b).sin().sum(), b)
    torch.testing.assert_close(grad, expected)
    rows = torch.tensor([4, 0, 4, 6])
    torch.testing.assert_close(matrix.rows(rows).to_dense(), dense[rows])


def test_prelu_matches_torch_forward_and_backward():
    torch.manual_seed(0)
    ours, ref = PReLU(4), nn.PReLU(4)
    with torch.no_grad():
        ours.weight.uniform_(-1, 1)
        ref.weight.copy_(ours.weight)
    x = torch.randn(30, 4, requires_grad=True)
    grads = torch.autograd.grad(ours(x).pow(3).sum(), (x, ours.weight))
    expected = torch.autograd.grad(ref(x).pow(3).sum(), (x, ref.weight))
    torch.testing.assert_close(ours(x), ref(x))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_dropout_acts_in_training_only():
    graph = tiny_graph(sparse=True)
    encoder = _encoder("gcn", graph.num_features, dropout=0.5)
    batch = GraphBatch.full(graph)
    torch.manual_seed(1)
    first = encoder(batch.x, batch)
    second = encoder(batch.x, batch)
    assert not torch.allclose(first, second)
    encoder.eval()
    torch.testing.assert_close(encoder(batch.x, batch), encoder(batch.x, batch))


@pytest.mark.parametrize("remap_cost", [0, 10**9], ids=["remap-columns", "permute-rows"])
@pytest.mark.parametrize(
    "gnn_type, residual", [("gcn", False), ("gcn", True), ("sage", False), ("gat", False),
                           ("gin", False)],
)  # fmt: skip
def test_propagate_permuted_equals_propagating_permuted_rows_with_equal_gradients(
    gnn_type, residual, remap_cost, monkeypatch
):
    monkeypatch.setattr(convs, "REMAP_COST", remap_cost)
    graph = tiny_graph(sparse=True)
    encoder = _encoder(gnn_type, graph.num_features, residual=residual)
    batch = GraphBatch.from_sampled(sample_batch(graph, torch.tensor([3, 9, 21]), 2), graph)
    t = encoder.transform(0, batch.x).detach().requires_grad_()
    perm = torch.randperm(t.shape[0], generator=torch.Generator().manual_seed(0))
    moved = encoder.forward_transformed(t, batch, source_perm=perm)
    plain = encoder.forward_transformed(t[perm], batch)
    torch.testing.assert_close(moved, plain)
    upstream = torch.randn_like(moved)
    (g_moved,) = torch.autograd.grad(moved, t, upstream)
    (g_plain,) = torch.autograd.grad(plain, t, upstream)
    torch.testing.assert_close(g_moved, g_plain)


@pytest.mark.parametrize("concat", [True, False])
def test_gatv2_conv_matches_pyg(concat):
    x, edge_index, block = _pyg_input(tiny_graph())
    ours = GATv2Conv(x.shape[1], 4, heads=3, concat=concat, residual=True)
    ref = pyg_nn.GATv2Conv(x.shape[1], 4, heads=3, concat=concat, residual=True)
    with torch.no_grad():
        for name in ("bias_src", "bias_dst", "bias"):
            getattr(ours, name).copy_(torch.randn_like(getattr(ours, name)))
        ref.lin_l.weight.copy_(ours.weight_part("lin").T)
        ref.lin_l.bias.copy_(ours.bias_src)
        ref.lin_r.weight.copy_(ours.weight_part("dst").T)
        ref.lin_r.bias.copy_(ours.bias_dst)
        ref.res.weight.copy_(ours.weight_part("residual").T)
        ref.att.copy_(ours.att)
        ref.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x, block), ref(x, edge_index))


def test_gatv2_attention_order_of_sources_can_depend_on_the_target():
    # GATv2's defining property: with a non-linearity between the two transforms, the order
    # of two sources by attention can differ between two targets; GAT's order cannot.
    torch.manual_seed(3)
    conv = GATv2Conv(4, 8, heads=1)
    x = torch.randn(4, 4)
    with torch.no_grad():
        t = conv.transform(x)
        h_src = conv.part(t, "lin") + conv.bias_src
        h_dst = conv.part(t, "dst") + conv.bias_dst

        def score(i: int, j: int) -> float:  # edge j -> i
            return float((F.leaky_relu(h_src[j] + h_dst[i], 0.2) * conv.att[0, 0]).sum())

        flips = 0
        for _ in range(50):
            conv.att.normal_()
            flips += (score(0, 2) > score(0, 3)) != (score(1, 2) > score(1, 3))
    assert flips > 0
