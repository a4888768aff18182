"""Neighbour sampling against agc's own training step, on the same batches.

The sampler should cost a small fraction of a step (target: sampling / step <= 0.15), so that
one worker process keeps the trainer fed. The step is agc's: its trainer, its DGI model and
SAGE encoder, its optimizer; the sampling time is what the trainer itself spends in its
"sampling" stage (sampling and the feature gather) inside those steps, timed by wrapping the
trainer's stage labels. The sampler is also timed alone, with the training threads and with
one thread as in a loader worker. Default: a random graph with 1M nodes and 20M directed
edges, fan-out [10, 10], batch 2048, 128 random features, hidden 256.

    python benchmarks/bench_sampler.py [--nodes 1000000 --edges 20000000 --threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections import defaultdict

import torch
from torch_geometric.sampler import NodeSamplerInput

import agc_cli.engine.trainer as trainer_module
from agc_cli.data.graph import Graph, to_csc
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.sampling import make_loader
from agc_cli.settings import load_settings


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

    settings = load_settings({
        "dataset": "sbm-small", "model": "dgi", "gnn_type": "sage", "num_layers": 2,
        "hidden_channels": args.hidden, "fan_out": args.fan_out, "batch_size": args.batch_size,
        "mini_batch": True, "epochs": 1000, "save_every": 0, "device": "cpu", "seed": 0,
    })  # fmt: skip
    session = open_session(settings, graph)
    torch.set_num_threads(args.threads)  # open_session sizes threads to the free cores
    spent = time_stages()
    Trainer(graph, session.model, session.settings, session.device, max_steps=2).fit()  # warm-up
    spent.clear()
    start = time.perf_counter()
    Trainer(graph, session.model, session.settings, session.device, max_steps=args.steps).fit()
    step_s = (time.perf_counter() - start) / args.steps
    in_step = spent["sampling"] / args.steps
    print(
        f"agc train step (DGI, SAGE x{settings.num_layers} {args.hidden}, Adam, incl. sampling): "
        f"{step_s * 1e3:.1f} ms/batch; of it sampling + feature gather {in_step * 1e3:.1f} ms, "
        f"forward/backward/optimizer {(step_s - in_step) * 1e3:.1f} ms"
    )
    print(f"ratio sampling / agc step: {in_step / step_s:.3f} (target <= 0.15)")
    print(f"ratio sampler alone / agc step: {sample_s / step_s:.3f}")


def time_stages() -> dict[str, float]:
    """Wall seconds the trainer spends in each labelled stage from now on (its ``stage``
    ranges, wrapped with a timer; the profiler labels stay)."""
    spent: dict[str, float] = defaultdict(float)
    label = trainer_module.stage

    @contextlib.contextmanager
    def timed(name: str):
        start = time.perf_counter()
        with label(name):
            yield
        spent[name] += time.perf_counter() - start

    trainer_module.stage = timed
    return spent


if __name__ == "__main__":
    main()
