"""DGI's two views on a sampled 2-layer batch (seeds fewer than the sampled nodes) equal a plain
GCN computed directly on the blocks with the features and with their rows permuted: the fast
paths (stacked, column-remapped adjacency; reassociated upper layer) leave no shortcut."""

from __future__ import annotations

import torch

from agc_cli.data.synthetic import generate, parse_synthetic
from agc_cli.models.batch import GraphBatch
from agc_cli.models.encoder import Encoder
from agc_cli.models.sparse import SparseMatrix
from agc_cli.sampling import make_loader

SPEC = "sbm:nodes=3000,clusters=5,degree=14,homophily=0.8,features=300,snr=1,seed=0"


def reference_gcn(encoder: Encoder, batch: GraphBatch, x: torch.Tensor) -> torch.Tensor:
    """The encoder's layers as dense float64 products on each block (d/s rescaling, self-loop
    weight 1 / (d + 1), bias, activation)."""
    layers, h = encoder.num_layers, x.double()
    for i in range(layers):
        block = batch.block(i, layers)
        src, dst = block.edge_index
        nd = block.num_dst
        d, s = block.degree.double(), block.sampled_degree.double().clamp(min=1)
        a = torch.zeros(nd, block.num_src, dtype=torch.float64)
        weight = (d[dst] / s[dst]) / torch.sqrt((d[dst] + 1) * (d[src] + 1))
        a.index_put_((dst, src), weight, accumulate=True)
        a[torch.arange(nd), torch.arange(nd)] += 1 / (d[:nd] + 1)
        conv = encoder.convs[i]
        h = a @ (h @ conv.weight.double()) + conv.bias.double()
        h = encoder.acts[i](h.float()).double()
    return h


def sampled_batch() -> tuple[GraphBatch, torch.Tensor]:
    graph = generate(parse_synthetic(SPEC))
    loader = make_loader(graph, None, [15, 15], 512, shuffle=True, seed=0, sampler="agc")
    batch = GraphBatch.from_sampled(next(iter(loader)), graph)
    assert batch.batch_size < batch.num_nodes and batch.num_sampled_nodes[2] > 0
    return batch, batch.x


def test_identity_corruption_gives_the_clean_view_exactly():
    batch, x = sampled_batch()
    torch.manual_seed(0)
    encoder = Encoder(x.shape[1], 64, 2, "gcn").eval()
    with torch.no_grad():
        pos, neg = encoder.forward_pair(x, batch, torch.arange(batch.num_nodes))
    assert torch.equal(pos, neg)


def test_both_views_equal_a_plain_gcn_on_the_blocks_dense_and_sparse_features():
    batch, x = sampled_batch()
    torch.manual_seed(0)
    encoder = Encoder(x.shape[1], 64, 2, "gcn").eval()
    perm = torch.randperm(batch.num_nodes, generator=torch.Generator().manual_seed(1))
    clean, corrupted = reference_gcn(encoder, batch, x), reference_gcn(encoder, batch, x[perm])
    for features in (x, SparseMatrix.from_csr(x.to_sparse_csr())):
        with torch.no_grad():
            pos, neg = encoder.forward_pair(features, batch, perm)
        torch.testing.assert_close(pos.double(), clean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(neg.double(), corrupted, atol=1e-5, rtol=1e-4)
