"""Out-of-core training and inference from an on-disk store: peak memory against data size.

Usage::

    python benchmarks/bench_out_of_core.py --nodes 5000000 --store /work/bench-store
    python benchmarks/bench_out_of_core.py --nodes 60000000 --infer-nodes 20000 --store ...

Stages: (1) the synthetic graph (``--nodes`` × ``--features`` float32 features, average degree
``--degree``) is generated straight into a store, as ``agc convert`` does, in a child process;
(2) DGI with a 2-layer GraphSAGE encoder trains ``--batches`` mini-batches from the
memory-mapped store; (3) exact layer-wise inference embeds every node (or ``--infer-nodes``
random ones). The store is deleted at the end unless ``--keep``; an existing store of the same
spec is reused.

Memory is reported per stage from ``/proc/self/status``, with the peak reset in between
(``/proc/self/clear_refs``):

* **peak RSS** (``VmHWM``): what the issue's target (< 25% of the data size) is about. It counts
  anonymous memory *and* resident pages of mapped files: those are page cache, shared and
  reclaimable, but a gather through a mapping maps whole page-cache folios (~1.4 MB per row
  here), so a mapped read of a few thousand random rows can map most of a cached file.
* **peak anonymous** (``RssAnon``, sampled at 20 Hz): the process's own allocations.
* **peak mapped files** (``RssFile``, sampled): resident mapped file pages.

psutil's ``uss`` is not used: file pages mapped by this process alone count as private, so it
includes the mapped store as RSS does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import threading
import time
from pathlib import Path

import torch

from agc_cli.data import store
from agc_cli.data.sources import convert_dataset, load_graph
from agc_cli.engine.inference import layerwise
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.settings import load_settings

GB = 1e9


def status() -> dict[str, int]:
    """``VmHWM``, ``VmRSS``, ``RssAnon``, ``RssFile`` of this process, in bytes."""
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
    return values


class StagePeaks:
    """Peak RSS (``VmHWM``, reset on entry) and sampled peaks of anonymous and file memory."""

    def __enter__(self) -> StagePeaks:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while True:
            now = status()
            self.anon = max(self.anon, now["RssAnon"])
            self.file = max(self.file, now["RssFile"])
            if self._stop.wait(0.05):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.rss = status()["VmHWM"]


def convert(spec: str, path: Path, dtype: str) -> dict:
    """Write the store in a child process (its memory is not this process's); reuse one made
    from the same spec.

    Returns:
        ``meta`` (the store's meta.json), and ``seconds`` and ``peaks`` unless reused.
    """
    if store.is_store(path) and store.read_meta(path)["source"].get("dataset") == spec:
        print(f"reusing the store in {path}")
        return {"meta": store.read_meta(path), "seconds": None}
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_convert_child, (spec, path, dtype))


def _convert_child(spec: str, path: Path, dtype: str) -> dict:
    with StagePeaks() as peaks:
        start = time.perf_counter()
        meta = convert_dataset(spec, path, Path("."), Path("."), dtype=dtype, force=True)
        seconds = time.perf_counter() - start
    return {"meta": meta, "seconds": seconds, "peaks": (peaks.rss, peaks.anon, peaks.file)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5_000_000)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--degree", type=float, default=10.0)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=sorted(store.FEATURE_DTYPES))
    parser.add_argument("--batches", type=int, default=50, help="training mini-batches")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--fan-out", default="10,5")
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--infer-batch-size", type=int, default=8192)
    parser.add_argument("--infer-nodes", type=int, default=0, help="0: every node")
    parser.add_argument("--store", type=Path, default=Path("bench-store"))
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = parser.parse_args()

    spec = (
        f"sbm:nodes={args.nodes},clusters={args.clusters},degree={args.degree:g},"
        f"homophily=0.8,features={args.features},snr=1,skew=0,seed=0"
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    converted = convert(spec, args.store, args.dtype)
    meta = converted["meta"]
    data = sum(entry["bytes"] for entry in meta["files"].values())
    features = meta["files"]["x"]["bytes"]

    settings = load_settings({
        "dataset": str(args.store), "model": "dgi", "gnn_type": "sage", "num_layers": 2,
        "hidden_channels": args.hidden, "mini_batch": True, "batch_size": args.batch_size,
        "fan_out": args.fan_out, "epochs": 1, "seed": 0,
    })  # fmt: skip
    with StagePeaks() as open_peaks:
        graph = load_graph(settings.dataset, settings.root, settings.cache_dir)
        session = open_session(settings, graph)
    with StagePeaks() as train_peaks:
        start = time.perf_counter()
        trainer = Trainer(
            session.graph, session.model, settings, session.device, max_steps=args.batches
        )
        trainer.fit()
        train_seconds = time.perf_counter() - start
    nodes = None
    if args.infer_nodes:
        generator = torch.Generator().manual_seed(0)
        nodes = torch.randperm(graph.num_nodes, generator=generator)[: args.infer_nodes]
    with StagePeaks() as infer_peaks:
        start = time.perf_counter()
        embeddings = layerwise(session.model, graph, session.device, args.infer_batch_size,
                               nodes=nodes)  # fmt: skip
        infer_seconds = time.perf_counter() - start

    rows = [
        ("graph", spec),
        ("machine", f"{os.cpu_count()} cores, {ram / GB:.1f} GB RAM"),
        ("data size", f"{data / GB:.2f} GB (features {features / GB:.2f} GB "
                      f"{meta['feature_dtype']}); 25% = {0.25 * data / GB:.2f} GB"),
        ("model", f"DGI, SAGE x2, hidden {args.hidden}, batch {args.batch_size}, "
                  f"fan-out {args.fan_out}"),
        ("train", f"{args.batches} batches in {train_seconds:.1f} s = "
                  f"{args.batches / train_seconds:.2f} batches/s"),
        ("infer", f"{len(embeddings):,} x {embeddings.shape[1]} in {infer_seconds:.1f} s = "
                  f"{len(embeddings) / infer_seconds:,.0f} nodes/s"),
    ]  # fmt: skip
    if converted["seconds"] is not None:
        rows.insert(3, ("convert", f"{converted['seconds']:.0f} s (in a child process)"))
    for key, value in rows:
        print(f"{key:<18} {value}")
    print("stage     peak RSS          peak anonymous    peak mapped files")
    stages = [("open", open_peaks), ("train", train_peaks), ("infer", infer_peaks)]
    stages = [(name, (p.rss, p.anon, p.file)) for name, p in stages]
    if converted["seconds"] is not None:
        stages.insert(0, ("convert", converted["peaks"]))
    for name, peaks in stages:
        print(f"{name:<9} " + "  ".join(f"{b / GB:6.2f} GB {b / data:6.1%}" for b in peaks))
    if not args.keep:
        shutil.rmtree(args.store)
        print(f"deleted {args.store}")


if __name__ == "__main__":
    main()
