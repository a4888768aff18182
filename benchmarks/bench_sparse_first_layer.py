"""Sparse vs dense first layer on the same sampled mini-batches of a bag-of-words graph.

    python benchmarks/bench_sparse_first_layer.py [--dataset Physics] [--root ../shared/data]
        [--batches 4] [--model dgi] [--num-layers N] [--batch-size 2048] [--threads 2]
        [--default-allocator]

The same sampled batches (the preset's encoder, fan-out and batch size of ``--model``) go
through one training step each with the features as agc keeps them (sparse CSR rows, a
sparse x dense product forward and a sparse weight gradient backward) and densified
(``[nodes, features]`` rows, dense matmuls). Both start from the same weights and draw the
same corruption, so the script also checks that losses and weight gradients agree. It prints
the step time of each, their ratio (target: sparse / dense <= 0.05 on Physics) and the peak
RSS growth during each step. The data root is only read (raw files are symlinked into a
temporary root).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from agc_cli.data.sources import load_graph
from agc_cli.engine.memory import MemoryMonitor
from agc_cli.engine.planner import fmt_bytes
from agc_cli.engine.session import build_model
from agc_cli.engine.trainer import build_optimizer
from agc_cli.models import GraphBatch
from agc_cli.sampling.loader import GraphFeatureStore, GraphTopologyStore, make_loader
from agc_cli.sampling.neighbor import CSCTopology
from agc_cli.settings import load_settings
from agc_cli.utils.heap import retained_heap


class _NoFeatures(GraphFeatureStore):
    """A feature store that lists no tensors, so sampled batches come without ``x``."""

    def get_all_tensor_attrs(self) -> list:
        return []


def staged_root(dataset: str, root: Path) -> Path:
    """A temporary root whose ``<dataset>/raw`` links to the real raw files (read only)."""
    stage = Path(tempfile.mkdtemp(prefix="agc-bench-root-"))
    (stage / dataset).mkdir()
    os.symlink((root / dataset / "raw").resolve(), stage / dataset / "raw")
    return stage


def step(model, optimizer, data, graph, kind: str, seed: int, monitor: bool) -> tuple:
    """One training step on the sampled ``data``: fetch its feature rows (sparse CSR rows, or
    dense rows as the loader gathered them before), loss, backward, optimizer step.

    Returns (seconds, peak RSS growth, weight gradients). With ``monitor`` a thread samples
    the RSS every 2 ms (which slows the step down), so the timed pass runs without it and a
    second pass repeats the steps for memory.
    """
    model.generator = torch.Generator().manual_seed(seed)
    optimizer.zero_grad(set_to_none=True)
    with MemoryMonitor(interval=0.002) if monitor else contextlib.nullcontext() as mon:
        base = mon._rss() if monitor else 0
        t0 = time.perf_counter()
        fetch = graph.sparse_feature_rows if kind == "sparse" else graph.feature_rows
        data.x = fetch(data.n_id)
        model.loss(GraphBatch.from_sampled(data, graph)).loss.backward()
        optimizer.step()
        seconds = time.perf_counter() - t0
    peak = max(mon.peak.rss_bytes - base, 0) if monitor else 0
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    del data.x
    return seconds, peak, grads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Physics")
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / "../shared/data"))
    p.add_argument("--model", default="dgi")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--num-layers", type=int, default=None, help="encoder layers (default: preset)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=2048,
        help="seeds per batch (default 2048, the planner's size for 10K-1M nodes)",
    )
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument(
        "--default-allocator",
        action="store_true",
        help="glibc's own mmap/trim thresholds instead of agc's retained heap",
    )
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    root = Path(a.root)
    if not (root / a.dataset / "raw").is_dir():
        raise SystemExit(f"{root / a.dataset / 'raw'} not found: pass --root")
    cache = Path(tempfile.mkdtemp(prefix="agc-bench-cache-"))
    graph = load_graph(a.dataset, staged_root(a.dataset, root), cache)
    if not graph.sparse_features:
        raise SystemExit(f"{a.dataset}: features are dense; nothing to compare")
    overrides = {"batch_size": a.batch_size}
    if a.num_layers is not None:
        overrides["num_layers"] = a.num_layers
    settings = load_settings({"dataset": a.dataset, "model": a.model, "mini_batch": True,
                              "cache_dir": cache, **overrides})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    # The sampled structure only: each step fetches its own feature rows.
    stores = (_NoFeatures(graph), GraphTopologyStore(CSCTopology(graph.colptr, graph.row)))
    loader = make_loader(stores, None, settings.fan_out_list(), settings.batch_size,
                         shuffle=True, seed=0)  # fmt: skip
    batches = []
    for data in loader:
        batches.append(data)
        if len(batches) == a.batches + 1:  # the first is a warm-up
            break
    print(f"dataset      {a.dataset}: {graph.num_nodes:,} nodes, {graph.num_features:,} features "
          f"({graph.x.values().numel() / graph.num_nodes:.1f} non-zeros per row), "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"config       {a.model}, {settings.gnn_type} x{settings.num_layers}, hidden "
          f"{settings.hidden_channels}, fan-out {settings.fan_out_list()}, "
          f"batch {settings.batch_size}")  # fmt: skip
    runs = {}
    # As agc's trainer runs its steps on the CPU (agc_cli.utils.heap); --default-allocator
    # leaves glibc's thresholds alone.
    allocator = "glibc defaults" if a.default_allocator else "retained heap (as agc trains)"
    print(f"allocator    {allocator}")
    with retained_heap(not a.default_allocator):
        for kind in ("sparse", "dense"):
            passes = []
            for monitor in (False, True):
                twin = copy.deepcopy(model).train()
                optimizer = build_optimizer(twin, settings, "cpu")
                passes.append([
                    step(twin, optimizer, data, graph, kind, seed=i, monitor=monitor)
                    for i, data in enumerate(batches)
                ])  # fmt: skip
            # The first (warm-up) step starts from equal weights: its gradients must agree.
            runs[kind] = [(t[0], m[1], t[2]) for t, m in zip(*passes, strict=True)]
    first = runs["sparse"][0][2], runs["dense"][0][2]
    diff = max(float((first[0][n] - first[1][n]).abs().max()) for n in first[0])
    scale = max(float(g.abs().max()) for g in first[1].values())
    print(f"gradients    first step, same weights: max |sparse - dense| = {diff:.2e} "
          f"(largest gradient {scale:.2e})")  # fmt: skip
    print(f"{'batch':>5} {'nodes':>7} {'nnz':>9} {'sparse s':>9} {'dense s':>9} {'ratio':>7} "
          f"{'sparse peak':>12} {'dense peak':>11}")  # fmt: skip
    for i, (s, d) in enumerate(zip(runs["sparse"][1:], runs["dense"][1:], strict=True)):
        data = batches[i + 1]
        nnz = int(graph.sparse_feature_rows(data.n_id).values().numel())
        print(f"{i:>5} {data.n_id.numel():>7,} {nnz:>9,} {s[0]:>9.3f} {d[0]:>9.3f} "
              f"{s[0] / d[0]:>7.3f} {fmt_bytes(s[1]):>12} {fmt_bytes(d[1]):>11}")  # fmt: skip
    runs = {kind: steps[1:] for kind, steps in runs.items()}
    sparse = statistics.median(r[0] for r in runs["sparse"])
    dense = statistics.median(r[0] for r in runs["dense"])
    ratio = sparse / dense
    print(f"median step  sparse {sparse:.3f} s, dense {dense:.3f} s: sparse / dense = {ratio:.3f} "
          f"(target <= 0.05: {'yes' if ratio <= 0.05 else 'NO'})")  # fmt: skip
    peak_s = max(r[1] for r in runs["sparse"])
    peak_d = max(r[1] for r in runs["dense"])
    print(f"peak RSS growth per step  sparse {fmt_bytes(peak_s)}, dense {fmt_bytes(peak_d)}")


if __name__ == "__main__":
    main()
