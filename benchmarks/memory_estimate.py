"""Compare the planner's memory estimate with the measured peak of a few training steps.

Run in a fresh process so the peak belongs to this configuration alone:

    python benchmarks/memory_estimate.py --mode full --nodes 40000 --hidden 256
    python benchmarks/memory_estimate.py --mode mini --nodes 60000 --batch-size 4096

Prints the estimate, the measured peak above the baseline (RSS after imports, before the graph
exists) and their ratio; ``--json`` prints the same as one JSON object (used by the tests).
On a GPU the measured peak is ``torch.cuda.max_memory_allocated``; the script also reports
``torch.cuda.max_memory_reserved`` and reserved / allocated (the caching allocator's headroom,
to compare with the planner's ``CUDA_ALLOCATOR_HEADROOM``) and the device memory in use outside
the allocator after the run (``mem_get_info`` total − free − reserved: the CUDA context and
library workspaces, to compare with ``CUDA_CONTEXT_BYTES``). Run it on an otherwise idle GPU,
since other processes' memory counts as outside the allocator too:

    python benchmarks/memory_estimate.py --device cuda --mode full --nodes 20000 --degree 490 \
        --features 602 --hidden 512 --layers 1 --fan-out 15 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

import psutil
import torch

from agc_cli.data import synthetic
from agc_cli.data.sources import info_of
from agc_cli.engine.memory import MemoryMonitor
from agc_cli.engine.planner import (
    CUDA_ALLOCATOR_HEADROOM,
    CUDA_CONTEXT_BYTES,
    estimate,
    fmt_bytes,
)
from agc_cli.engine.runtime import resolve_device
from agc_cli.engine.session import open_session, train
from agc_cli.settings import load_settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["full", "mini"], default="full")
    p.add_argument("--model", default="dgi")
    p.add_argument("--gnn-type", default="gcn")
    p.add_argument("--nodes", type=int, default=40_000)
    p.add_argument("--degree", type=float, default=20)
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--fan-out", default="10,10")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(2)
    device = resolve_device(a.device)
    baseline = psutil.Process().memory_info().rss
    spec = (
        f"sbm:nodes={a.nodes},clusters=10,degree={a.degree},homophily=0.8,"
        f"features={a.features},snr=1,seed=0"
    )
    graph = synthetic.generate(synthetic.parse_synthetic(spec))
    settings = load_settings({
        "dataset": spec, "model": a.model, "gnn_type": a.gnn_type, "hidden_channels": a.hidden,
        "num_layers": a.layers, "mini_batch": a.mode == "mini", "batch_size": a.batch_size,
        "fan_out": a.fan_out, "epochs": a.epochs, "device": a.device, "save_every": 0,
    })  # fmt: skip
    est = estimate(info_of(graph, "synthetic"), settings)
    key = "full_batch_train" if a.mode == "full" else "mini_batch_train"
    predicted = est[key].total
    if device.type == "cpu":
        # On a CPU the device is the host: the graph itself is resident too.
        predicted += est["mini_batch_train"].host_total
    session = open_session(settings, graph)
    with MemoryMonitor(device) as mon:
        train(session, None)
    cuda: dict[str, float] = {}
    if device.type == "cuda":
        measured = mon.peak.cuda_bytes
        # The monitor reset the peak statistics on entry, so this is the run's peak too.
        reserved = int(torch.cuda.max_memory_reserved(device))
        free, total = torch.cuda.mem_get_info(device)
        cuda = {
            "max_reserved_bytes": reserved,
            "reserved_over_allocated": reserved / max(measured, 1),
            "outside_allocator_bytes": int(total - free - torch.cuda.memory_reserved(device)),
            "assumed_headroom": CUDA_ALLOCATOR_HEADROOM,
            "assumed_context_bytes": CUDA_CONTEXT_BYTES,
        }
    else:
        peak = max(mon.peak.rss_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        measured = peak - baseline
    out = {
        "mode": a.mode,
        "device": device.type,
        "estimate_bytes": predicted,
        "measured_bytes": measured,
        "ratio": measured / predicted,
        "components": est[key].components,
        **cuda,
    }
    if a.json:
        json.dump(out, sys.stdout)
        return
    print(f"{a.mode}-batch {a.model}/{a.gnn_type} on {a.nodes:,} nodes, hidden {a.hidden}, "
          f"{a.layers} layers ({device.type})")  # fmt: skip
    for name, value in est[key].components.items():
        print(f"  estimate {name:<24} {fmt_bytes(value)}")
    print(f"estimate total      {fmt_bytes(predicted)}")
    print(f"measured peak       {fmt_bytes(measured)} (above the baseline after imports)")
    print(f"measured / estimate {measured / predicted:.2f}")
    if cuda:
        headroom, context = cuda["reserved_over_allocated"], cuda["outside_allocator_bytes"]
        print(f"max reserved        {fmt_bytes(cuda['max_reserved_bytes'])}")
        print(f"reserved / allocated {headroom:.2f} (planner: {CUDA_ALLOCATOR_HEADROOM:.2f})")
        print(f"outside allocator   {fmt_bytes(context)} (context + workspaces; planner: "
              f"{fmt_bytes(CUDA_CONTEXT_BYTES)})")  # fmt: skip


if __name__ == "__main__":
    main()
