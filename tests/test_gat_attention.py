"""GAT and GATv2 attention (sorted-edge sum-bags with their own backward): outputs and
gradients equal PyG's GATConv / GATv2Conv, on whole graphs and on sampled bipartite blocks."""

from __future__ import annotations

import pytest
import torch
from sampled_batches import tiny_graph
from torch_geometric import nn as pyg_nn

from agc_cli.models import Block
from agc_cli.models.convs import GATConv, GATv2Conv, attention_edges


def _pair(kind: str, concat: bool, in_channels: int):
    torch.manual_seed(0)
    if kind == "gat":
        ours = GATConv(in_channels, 4, heads=3, concat=concat, residual=True)
        ref = pyg_nn.GATConv(in_channels, 4, heads=3, concat=concat, residual=True)
        with torch.no_grad():
            ref.lin.weight.copy_(ours.weight_part("lin").T)
            ref.att_src.copy_(ours.att_src)
            ref.att_dst.copy_(ours.att_dst)
    else:
        ours = GATv2Conv(in_channels, 4, heads=3, concat=concat, residual=True)
        ref = pyg_nn.GATv2Conv(in_channels, 4, heads=3, concat=concat, residual=True)
        with torch.no_grad():
            for name in ("bias_src", "bias_dst"):
                getattr(ours, name).copy_(torch.randn_like(getattr(ours, name)))
            ref.lin_l.weight.copy_(ours.weight_part("lin").T)
            ref.lin_l.bias.copy_(ours.bias_src)
            ref.lin_r.weight.copy_(ours.weight_part("dst").T)
            ref.lin_r.bias.copy_(ours.bias_dst)
            ref.att.copy_(ours.att)
    with torch.no_grad():
        ref.res.weight.copy_(ours.weight_part("residual").T)
        ours.bias.copy_(torch.randn_like(ours.bias))
        ref.bias.copy_(ours.bias)
    return ours, ref


def _their_grads(ref, kind: str) -> list[torch.Tensor]:
    """PyG's parameter gradients in the layout of ours (the transform's parts side by side)."""
    if kind == "gat":
        weight = torch.cat([ref.lin.weight.grad.T, ref.res.weight.grad.T], dim=1)
        return [weight, ref.att_src.grad, ref.att_dst.grad, ref.bias.grad]
    weight = torch.cat([ref.lin_l.weight.grad.T, ref.lin_r.weight.grad.T,
                        ref.res.weight.grad.T], dim=1)  # fmt: skip
    return [weight, ref.att.grad, ref.lin_l.bias.grad, ref.lin_r.bias.grad, ref.bias.grad]


def _our_grads(ours, kind: str) -> list[torch.Tensor]:
    names = ["weight", "att_src", "att_dst", "bias"] if kind == "gat" else [
        "weight", "att", "bias_src", "bias_dst", "bias"]  # fmt: skip
    return [getattr(ours, name).grad for name in names]


@pytest.mark.parametrize("kind", ["gat", "gatv2"])
@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("bipartite", [False, True], ids=["whole-graph", "sampled-block"])
def test_attention_output_and_gradients_equal_pyg(kind, concat, bipartite):
    graph = tiny_graph()
    x = graph.x.clone().requires_grad_()
    edge_index = graph.edge_index()
    num_dst = graph.num_nodes
    if bipartite:  # the first 9 nodes are destinations, every node a source
        num_dst = 9
        edge_index = edge_index[:, edge_index[1] < num_dst]
    block = Block(edge_index, num_dst, graph.degree())
    ours, ref = _pair(kind, concat, x.shape[1])
    out = ours(x, block)
    x_ref = x.detach().clone().requires_grad_()
    expected = ref((x_ref, x_ref[:num_dst]), edge_index)
    torch.testing.assert_close(out, expected)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    expected.backward(upstream)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for got, want in zip(_our_grads(ours, kind), _their_grads(ref, kind), strict=True):
        torch.testing.assert_close(got, want)


def test_attention_edges_keep_one_self_loop_per_destination_sorted_by_destination():
    graph = tiny_graph()
    block = Block(graph.edge_index(), graph.num_nodes, graph.degree())
    edges = attention_edges(block, heads=2)
    assert attention_edges(block, heads=2) is edges  # built once per block
    assert bool((edges.dst[1:] >= edges.dst[:-1]).all())
    loops = edges.src == edges.dst
    assert torch.equal(edges.dst[loops], torch.arange(graph.num_nodes))
    src, dst = graph.edge_index()
    assert int((~loops).sum()) == int((src != dst).sum())
