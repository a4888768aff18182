"""Epoch throughput of data-parallel training: one process against N (gloo on CPU, nccl on GPU).

Usage::

    python benchmarks/bench_ddp.py                       # 1 vs 2 processes, CPU
    python benchmarks/bench_ddp.py --nodes 200000 --processes 4 --device cuda

Runs ``agc train --nproc-per-node P`` (the real command, in a subprocess) for each process count
on the same synthetic graph with the same *global* batch (``--batch-size`` ÷ P seeds per rank),
so every run takes the same number of optimizer steps per epoch. Each process uses cores ÷ P
threads. Throughput is seed nodes per second of the last epoch (``metrics.jsonl``; the first
epoch includes warm-up), and the ratio to one process is printed. For reference, one process
also runs with the thread count of one of the N (cores ÷ N; ``LOCAL_WORLD_SIZE=N`` is what
agc divides the cores by), which separates the per-core gain from intra-op threading's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(processes: int, args: argparse.Namespace, workdir: Path, share: int = 1) -> dict:
    run_dir = workdir / f"p{processes}-s{share}"
    cmd = [sys.executable, "-m", "agc_cli", "train", "--dataset", args.graph,
           "--model", args.model, "--gnn-type", args.gnn_type, "--num-layers", "2",
           "--hidden-channels", str(args.hidden), "--fan-out", args.fan_out,
           "--batch-size", str(args.batch_size // processes), "--epochs", str(args.epochs),
           "--device", args.device, "--seed", "0", "--run-dir", str(run_dir),
           "--nproc-per-node", str(processes)]  # fmt: skip
    env = {**os.environ, "LOCAL_WORLD_SIZE": str(share)} if share > 1 else None
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{processes} process(es) failed:\n{done.stderr[-2000:]}")
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]
    threads = re.search(r"(\d+) thread\(s\) each", done.stdout)
    cores = len(os.sched_getaffinity(0))
    return {"processes": processes, "threads": int(threads[1]) if threads else cores // share,
            "nodes_per_s": last["nodes_per_s"],
            "epoch_s": last["seconds"], "loss": last["loss"], "wall_s": wall}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=50_000)
    p.add_argument("--degree", type=float, default=20)
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--model", default="dgi")
    p.add_argument("--gnn-type", default="sage")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--fan-out", default="10,5")
    p.add_argument("--batch-size", type=int, default=1024, help="global batch (all ranks)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    a.graph = (
        f"sbm:nodes={a.nodes},clusters=20,degree={a.degree},homophily=0.8,"
        f"features={a.features},snr=1,seed=0"
    )
    print(f"graph {a.graph}")
    print(f"{a.model}/{a.gnn_type} x2, hidden {a.hidden}, fan-out {a.fan_out}, "
          f"global batch {a.batch_size}, {a.epochs} epochs, device {a.device}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="agc-bench-ddp-") as tmp:
        one, many = run(1, a, Path(tmp)), run(a.processes, a, Path(tmp))
        reference = run(1, a, Path(tmp), share=a.processes)
    base = one["nodes_per_s"]
    print(f"{'processes':>9} {'threads':>7} {'nodes/s':>10} {'epoch s':>8} {'last loss':>9} "
          f"{'wall s':>7} {'ratio':>6}")  # fmt: skip
    for r in (one, many, reference):
        print(f"{r['processes']:>9} {r['threads']:>7} {r['nodes_per_s']:>10,.0f} "
              f"{r['epoch_s']:>8.2f} {r['loss']:>9.4f} {r['wall_s']:>7.1f} "
              f"{r['nodes_per_s'] / base:>6.2f}")  # fmt: skip
    print(f"throughput ratio {a.processes} vs 1 process: {many['nodes_per_s'] / base:.2f}")
    print(
        f"per-core gain ({a.processes} processes vs 1 process with {reference['threads']} "
        f"thread(s)): {many['nodes_per_s'] / reference['nodes_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
