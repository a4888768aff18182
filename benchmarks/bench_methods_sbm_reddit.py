"""Mini-batch training of each method on ``sbm-reddit``: batches per second and peak RSS.

    python benchmarks/bench_methods_sbm_reddit.py [--models ns4gc,s3gc,...] [--batches 5]
        [--dataset sbm-reddit] [--cache-dir DIR]

Each method runs in a fresh process (so its peak RSS is its own) with its preset, forced to
mini-batch, for ``--batches`` training batches after one untimed warm-up batch; the
training-free methods have no batches and are listed as such. The graph comes from the cache
(generated on first use, about a minute and 1.5 GB). Prints one row per method: batch size,
fan-out, ms per batch, batches/s, seed nodes/s and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The methods of issue 13 (PyAGC's catalogue beyond agc's first eight).
DEFAULT_MODELS = ("ns4gc,s3gc,dinknet,gbt,node2vec,mincut,neuromap,vgae,arga,argva,"
                  "sagsc,nafs,kmeans")  # fmt: skip


def one(model: str, dataset: str, cache: Path, batches: int) -> dict:
    """Train ``model`` for 1 + ``batches`` batches in this process; the measured row."""
    import torch

    from agc_cli.data.sources import load_graph
    from agc_cli.engine.session import open_session
    from agc_cli.engine.trainer import Trainer
    from agc_cli.models.registry import get_model_class
    from agc_cli.settings import load_settings

    torch.set_num_threads(2)
    if not getattr(get_model_class(model), "trainable", True):
        return {"model": model, "trainable": False}
    graph = load_graph(dataset, cache, cache)
    settings = load_settings({
        "dataset": dataset, "model": model, "mini_batch": True, "epochs": 1,
        "save_every": 0, "cache_dir": cache, "device": "cpu",
    })  # fmt: skip
    session = open_session(settings, graph)
    s = session.settings
    # Warm-up (first-batch allocations, lazy structures), then the timed batches.
    Trainer(graph, session.model, s, session.device, max_steps=1).fit()
    t0 = time.perf_counter()
    Trainer(graph, session.model, s, session.device, max_steps=batches).fit()
    seconds = time.perf_counter() - t0
    return {
        "model": model, "trainable": True, "batch_size": s.batch_size,
        "fan_out": ",".join(map(str, s.fan_out)), "batches": batches, "seconds": seconds,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--dataset", default="sbm-reddit")
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--cache-dir", default=os.environ.get("AGC_CACHE_DIR"))
    p.add_argument("--one", help=argparse.SUPPRESS)  # child process: one method, JSON out
    a = p.parse_args()
    cache = Path(a.cache_dir or Path(tempfile.gettempdir()) / "agc-bench-cache")
    if a.one:
        print(json.dumps(one(a.one, a.dataset, cache, a.batches)))
        return
    cache.mkdir(parents=True, exist_ok=True)
    print(f"dataset {a.dataset}, cache {cache}, {a.batches} timed batches after 1 warm-up, "
          "2 threads, CPU", file=sys.stderr)  # fmt: skip
    print(f"{'method':<10} {'batch':>6} {'fan-out':>9} {'ms/batch':>9} {'batches/s':>9} "
          f"{'nodes/s':>9} {'peak RSS':>9}")  # fmt: skip
    for model in a.models.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", model, "--dataset", a.dataset,
             "--batches", str(a.batches), "--cache-dir", str(cache)],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{model:<10} failed: {last}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        if not row["trainable"]:
            print(f"{model:<10} training-free: no batches")
            continue
        per = row["seconds"] / row["batches"]
        gib = row["peak_rss"] / 2**30
        print(f"{model:<10} {row['batch_size']:>6} {row['fan_out']:>9} {per * 1000:>9.0f} "
              f"{1 / per:>9.2f} {row['batch_size'] / per:>9.0f} {gib:>7.2f} GB",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
