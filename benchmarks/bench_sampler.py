"""Neighbour sampling time against a GraphSAGE + DGI training step on the same batches.

The sampler should cost a small fraction of a step (target: sampling / step <= 0.15), so that
one worker process keeps the trainer fed. Default: a random graph with 1M nodes and 20M
directed edges, fan-out [10, 10], batch 2048, 128 random features, hidden 256.

    python benchmarks/bench_sampler.py [--nodes 1000000 --edges 20000000 --threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import Tensor, nn
from torch_geometric.nn import DeepGraphInfomax, SAGEConv
from torch_geometric.sampler import NodeSamplerInput
from torch_geometric.utils import trim_to_layer

from agc_cli.data.graph import Graph, to_csc
from agc_cli.sampling import make_loader


class SAGE(nn.Module):
    """Two-layer GraphSAGE that trims each layer to the hops it still needs."""

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int = 2):
        super().__init__()
        channels = [in_channels] + [hidden_channels] * num_layers
        self.convs = nn.ModuleList(
            SAGEConv(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)
        )
        self.acts = nn.ModuleList(nn.PReLU(hidden_channels) for _ in range(num_layers))

    def forward(
        self, x: Tensor, edge_index: Tensor, num_nodes: list[int], num_edges: list[int]
    ) -> Tensor:
        for layer, (conv, act) in enumerate(zip(self.convs, self.acts, strict=True)):
            x, edge_index, _ = trim_to_layer(layer, num_nodes, num_edges, x, edge_index)
            x = act(conv(x, edge_index))
        return x


def corruption(x: Tensor, *args):
    return (x[torch.randperm(x.size(0))], *args)


def summary(z: Tensor, *args, **kwargs) -> Tensor:
    return torch.sigmoid(z.mean(dim=0))


def random_graph(num_nodes: int, num_edges: int, num_features: int) -> Graph:
    """Uniformly random undirected graph with about ``num_edges`` directed edges."""
    edge_index = torch.randint(0, num_nodes, (2, num_edges // 2))
    colptr, row = to_csc(edge_index, num_nodes, undirected=True)
    x = torch.randn(num_nodes, num_features)
    return Graph("random", colptr, row, x)


def per_call(fn, repeats: int) -> tuple[float, float]:
    """Mean and median seconds per call of ``fn(i)`` for ``i`` in ``range(repeats)``."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.mean(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=20_000_000)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--fan-out", type=int, nargs="+", default=[10, 10])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"threads {args.threads}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    start = time.perf_counter()
    graph = random_graph(args.nodes, args.edges, args.features)
    print(
        f"graph: {graph.num_nodes:,} nodes, {graph.num_edges:,} directed edges, "
        f"{args.features} features ({time.perf_counter() - start:.1f} s to build)"
    )
    loader = make_loader(graph, None, args.fan_out, args.batch_size, shuffle=True, seed=0)
    sampler = loader.node_sampler
    order = loader.order.order()

    def seeds(batch: int) -> NodeSamplerInput:
        ids = order[batch * args.batch_size : (batch + 1) * args.batch_size]
        return NodeSamplerInput(ids, ids)

    sampler.sample_from_nodes(seeds(args.batches))  # warm-up: allocates the lookup table
    outputs = [sampler.sample_from_nodes(seeds(b)) for b in range(args.batches)]
    sample_s, sample_med = per_call(lambda b: sampler.sample_from_nodes(seeds(b)), args.batches)
    # DataLoader workers run with one thread each.
    torch.set_num_threads(1)
    worker_s, worker_med = per_call(lambda b: sampler.sample_from_nodes(seeds(b)), args.batches)
    torch.set_num_threads(args.threads)
    batches = []
    gather_s, _ = per_call(lambda b: batches.append(loader.filter_fn(outputs[b])), args.batches)
    nodes = statistics.mean(out.node.numel() for out in outputs)
    edges = statistics.mean(out.row.numel() for out in outputs)
    feature_bytes = nodes * args.features * 4
    print(f"batch: {nodes:,.0f} nodes, {edges:,.0f} edges (fan-out {args.fan_out})")
    print(f"sample: {sample_s * 1e3:.1f} ms/batch mean, {sample_med * 1e3:.1f} median")
    print(
        f"sample, 1 thread (as in a worker): {worker_s * 1e3:.1f} ms/batch mean, "
        f"{worker_med * 1e3:.1f} median"
    )
    print(
        f"features + Data: {gather_s * 1e3:.1f} ms/batch "
        f"({feature_bytes / gather_s / 1e9:.1f} GB/s of feature rows)"
    )

    model = DeepGraphInfomax(
        args.hidden, SAGE(args.features, args.hidden), summary=summary, corruption=corruption
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(b: int) -> float:
        batch = batches[b % len(batches)]
        optimizer.zero_grad()
        hops = (batch.num_sampled_nodes, batch.num_sampled_edges)
        pos, neg, s = model(batch.x, batch.edge_index, *hops)
        loss = model.loss(pos[: batch.batch_size], neg[: batch.batch_size], s)
        loss.backward()
        optimizer.step()
        return loss.item()

    step(-1)  # warm-up
    step_s, step_med = per_call(step, args.steps)
    print(
        f"train step (2-layer SAGE {args.hidden}, DGI, Adam): {step_s * 1e3:.1f} ms/batch mean, "
        f"{step_med * 1e3:.1f} median"
    )
    print(f"ratio sample / step: {sample_s / step_s:.3f} (target <= 0.15)")
    print(f"ratio (sample + features) / step: {(sample_s + gather_s) / step_s:.3f}")


if __name__ == "__main__":
    main()
