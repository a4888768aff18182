"""Exact layer-wise inference of every node: whole per-node tables vs the gathered path.

    python benchmarks/bench_infer_all.py STORE_OR_DATASET [--gnn-type sage] [--hidden 16]
        [--layers 2] [--batch-size 65536] [--threads 2]

The same encoder (random weights, seed 0) embeds every node twice in one run: once through
``layerwise(nodes=None)`` (each layer transforms every node in node order, then batches of
consecutive destinations propagate from the whole tables by global id) and once through the
general path, forced by naming every node explicitly (relabel each batch's sources, gather
their rows). Prints both times, nodes/s, their ratio, and the largest difference between the
two embeddings. ``STORE_OR_DATASET``: an ``agc convert`` store (e.g. the one
``bench_out_of_core.py --keep`` leaves) or a synthetic spec.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from agc_cli.data.sources import load_graph
from agc_cli.engine.inference import layerwise
from agc_cli.engine.session import build_model
from agc_cli.settings import load_settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--gnn-type", default="sage")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cache = Path(tempfile.mkdtemp(prefix="agc-bench-cache-"))
    graph = load_graph(a.dataset, Path("."), cache)
    settings = load_settings({"model": "dgi", "gnn_type": a.gnn_type, "hidden_channels": a.hidden,
                              "num_layers": a.layers, "cache_dir": cache})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes).eval()
    cpu, n = torch.device("cpu"), graph.num_nodes
    print(f"graph        {a.dataset}: {n:,} nodes, {graph.num_edges:,} edges, "
          f"{graph.num_features} features; {a.gnn_type} x{a.layers}, hidden {a.hidden}, "
          f"batch {a.batch_size:,}, {torch.get_num_threads()} threads")  # fmt: skip
    results = {}
    for name, nodes in (("tables", None), ("gathered", torch.arange(n))):
        t0 = time.perf_counter()
        results[name] = (layerwise(model, graph, cpu, a.batch_size, nodes=nodes, spill=False),
                         time.perf_counter() - t0)  # fmt: skip
        print(f"{name:<12} {results[name][1]:8.2f} s = {n / results[name][1]:>11,.0f} nodes/s")
    (tables, t_tables), (gathered, t_gathered) = results["tables"], results["gathered"]
    diff = float((tables - gathered).abs().max())
    print(f"tables / gathered time = {t_tables / t_gathered:.3f} "
          f"({t_gathered / t_tables:.1f}x faster); max |difference| {diff:.2e} "
          f"(embeddings' mean |value| {float(gathered.abs().mean()):.2e})")  # fmt: skip


if __name__ == "__main__":
    main()
