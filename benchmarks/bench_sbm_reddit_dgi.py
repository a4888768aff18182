"""Mini-batch DGI on ``sbm-reddit`` (SAGE, 2 layers, hidden 256, fan-out [10, 10], batch 2048):
seconds per epoch and peak RSS (target: under 8 GB).

    python benchmarks/bench_sbm_reddit_dgi.py [--epochs 1] [--max-batches N] [--num-workers 0]

The graph comes from the cache (generated once, about a minute). ``--max-batches`` times that
many batches and extrapolates to a full epoch.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from agc_cli.data.sources import load_graph
from agc_cli.engine.memory import MemoryMonitor
from agc_cli.engine.planner import fmt_bytes
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.settings import load_settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="sbm-reddit")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--cache-dir", default=os.environ.get("AGC_CACHE_DIR"))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    a = p.parse_args()
    torch.set_num_threads(2)
    cache = Path(a.cache_dir or tempfile.mkdtemp())
    t0 = time.perf_counter()
    with MemoryMonitor() as load_mon:
        graph = load_graph(a.dataset, cache, cache)
    load_s = time.perf_counter() - t0
    settings = load_settings({
        "dataset": a.dataset, "model": "dgi", "gnn_type": "sage", "num_layers": 2,
        "hidden_channels": 256, "fan_out": "10,10", "batch_size": 2048, "mini_batch": True,
        "epochs": a.epochs, "num_workers": a.num_workers, "save_every": 0, "cache_dir": cache,
        "device": a.device,
    })  # fmt: skip
    session = open_session(settings, graph)
    batches_per_epoch = math.ceil(graph.num_nodes / settings.batch_size)
    trainer = Trainer(graph, session.model, session.settings, session.device,
                      max_steps=a.max_batches)  # fmt: skip
    result = trainer.fit()
    batches = a.max_batches or batches_per_epoch * a.epochs
    per_batch = result.seconds / batches
    peak = max(result.peak.rss_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(f"dataset            {a.dataset}: {graph.num_nodes:,} nodes, {graph.num_edges:,} edges")
    print(f"graph load         {load_s:.1f} s (peak RSS {fmt_bytes(load_mon.peak.rss_bytes)})")
    print("config             DGI, SAGE x2, hidden 256, fan-out [10, 10], batch 2048, "
          f"workers {a.num_workers}")  # fmt: skip
    print(f"batches timed      {batches} ({per_batch * 1000:.0f} ms/batch)")
    print(
        f"seconds per epoch  {per_batch * batches_per_epoch:.1f} "
        f"({batches_per_epoch} batches{'' if a.max_batches is None else ', extrapolated'})"
    )
    verdict = "yes" if peak < 8 * 2**30 else "NO"
    print(f"peak RSS           {fmt_bytes(peak)} (target < 8 GB: {verdict})")
    if result.peak.cuda_bytes is not None:
        print(f"device             {session.device} ({torch.cuda.get_device_name(session.device)})")
        print(
            f"peak CUDA memory   {fmt_bytes(result.peak.cuda_bytes)} (max allocated; PyAGC's "
            "scalability guide: Reddit DGI 142 s for 200 epochs, 4.2 GB on an A100)"
        )
    loss = "n/a (partial epoch)" if math.isnan(result.loss) else f"{result.loss:.4f}"
    print(f"final loss         {loss}")


if __name__ == "__main__":
    main()
