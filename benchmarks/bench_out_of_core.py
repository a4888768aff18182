"""Out-of-core training and inference from an on-disk store: peak memory against data size.

Usage::

    python benchmarks/bench_out_of_core.py                      # 300K nodes, about a minute
    python benchmarks/bench_out_of_core.py --nodes 5000000 --store /work/bench-store
    python benchmarks/bench_out_of_core.py --nodes 60000000 --store /work/bench-store

Stages: (1) the synthetic graph (``--nodes`` × ``--features`` float32 features, average degree
``--degree``, ``--clusters`` planted clusters) is generated straight into a store, as
``agc convert`` does, in a child process; (2) DGI with a 2-layer GraphSAGE encoder trains
``--batches`` mini-batches from the memory-mapped store; (3) exact layer-wise inference embeds
every node (or ``--infer-nodes`` random ones), streamed batch by batch into an ``.npy`` beside
the store (``--embeddings-dtype float16`` halves it), as ``agc infer --stream`` does;
(4) **fit**: mini-batch k-means on a sample of the embeddings' rows; (5) **assign**: one
streamed pass labelling every node, labels to disk; (6) **metrics**: NMI (and the other label
metrics) against the planted clusters, then modularity and conductance streamed over the
store's topology. Stages 4-6 run in a child process of their own, over the memory-mapped
files, as ``agc cluster --out-of-core`` does (after ``--infer-nodes``, they are skipped). The
store and the embeddings are deleted at the end unless ``--keep``; an existing store of the
same spec is reused.

Memory is reported per stage from ``/proc/self/status``, with the peak reset in between
(``/proc/self/clear_refs``):

* **peak RSS** (``VmHWM``): what the issue's target (< 25% of the data size) is about. It counts
  anonymous memory *and* resident pages of mapped files: those are page cache, shared and
  reclaimable, but a gather through a mapping maps whole page-cache folios (~1.4 MB per row
  here), so a mapped read of a few thousand random rows can map most of a cached file.
* **peak anonymous** (``RssAnon``, sampled at 20 Hz): the process's own allocations.
* **peak mapped files** (``RssFile``, sampled): resident mapped file pages.
* **growth**: peak RSS minus the RSS at the stage's start (what the stage itself added; at the
  small default size the process's baseline, torch and the interpreter, dominates the peak).

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

import numpy as np
import torch

from agc_cli.cluster.streaming import (
    assign_blocks,
    fit_sample,
    streamed_label_metrics,
    streamed_structure_metrics,
)
from agc_cli.data import store
from agc_cli.data.sources import convert_dataset, load_graph
from agc_cli.engine.inference import EmbeddingsFile, layerwise
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.settings import load_settings
from agc_cli.utils.npy import open_npy

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
        self.start = status()["VmRSS"]
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

    def peaks(self) -> tuple[int, int, int, int]:
        """Peak RSS, anonymous and mapped-file memory, and the RSS growth over the stage."""
        return self.rss, self.anon, self.file, self.rss - self.start


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
    return {"meta": meta, "seconds": seconds, "peaks": peaks.peaks()}


def cluster_stages(embeddings: Path, path: Path, clusters: int, sample: int | None,
                   n_init: int) -> dict:  # fmt: skip
    """Fit, assign and metrics in a child process (its memory is its own, as a separate
    ``agc cluster`` would be), over the memory-mapped embeddings and store files."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_cluster_child, (embeddings, path, clusters, sample, n_init))


def _cluster_child(embeddings: Path, path: Path, clusters: int, sample: int | None,
                   n_init: int) -> dict:  # fmt: skip
    graph = store.open_store(path)

    def mapped(name: str) -> np.ndarray:
        return open_npy(store.store_file(path, graph.meta["files"][name]["file"]))

    emb = open_npy(embeddings)
    labels_path = embeddings.with_name(embeddings.stem + "-labels.npy")
    out: dict = {}
    with StagePeaks() as peaks:
        start = time.perf_counter()
        fit, size = fit_sample(emb, clusters, seed=0, sample=sample, n_init=n_init)
        out["fit"] = (time.perf_counter() - start, size, peaks)
    with StagePeaks() as peaks:
        start = time.perf_counter()
        assign_blocks(emb, fit.centroids, labels_path)
        out["assign"] = (time.perf_counter() - start, len(emb), peaks)
    with StagePeaks() as peaks:
        start = time.perf_counter()
        pred = np.load(labels_path)
        metrics = streamed_label_metrics(pred, mapped("y"))
        metrics.update(streamed_structure_metrics(pred, mapped("colptr"), mapped("row")))
        out["metrics"] = (time.perf_counter() - start, len(pred), peaks)
    labels_path.unlink()
    result = {name: (seconds, rows, p.peaks()) for name, (seconds, rows, p) in out.items()}
    return {"stages": result, "metrics": metrics, "sample": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300_000)
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
    parser.add_argument("--sample-rows", type=int, default=None,
                        help="rows k-means is fitted on (default: agc's)")  # fmt: skip
    parser.add_argument("--n-init", type=int, default=3, help="k-means++ restarts of the fit")
    parser.add_argument("--embeddings-dtype", default="float32", choices=["float32", "float16"])
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
    emb_path = args.store.with_name(args.store.name + "-embeddings.npy")
    sink = None if nodes is not None else EmbeddingsFile(emb_path, graph.num_nodes,
                                                         args.embeddings_dtype)  # fmt: skip
    with StagePeaks() as infer_peaks:
        start = time.perf_counter()
        embeddings = layerwise(session.model, graph, session.device, args.infer_batch_size,
                               nodes=nodes, sink=sink)  # fmt: skip
        if sink is not None:
            sink.commit()
        infer_seconds = time.perf_counter() - start
    shape = tuple(embeddings.shape) if sink is None else (graph.num_nodes, sink.dim)
    clustered = None
    if sink is not None:
        del session, trainer
        clustered = cluster_stages(emb_path, args.store, args.clusters, args.sample_rows,
                                   args.n_init)  # fmt: skip
    rows = [
        ("graph", spec),
        ("machine", f"{os.cpu_count()} cores, {ram / GB:.1f} GB RAM"),
        ("data size", f"{data / GB:.2f} GB (features {features / GB:.2f} GB "
                      f"{meta['feature_dtype']}); 25% = {0.25 * data / GB:.2f} GB"),
        ("model", f"DGI, SAGE x2, hidden {args.hidden}, batch {args.batch_size}, "
                  f"fan-out {args.fan_out}"),
        ("train", f"{args.batches} batches in {train_seconds:.1f} s = "
                  f"{args.batches / train_seconds:.2f} batches/s"),
        ("infer", f"{shape[0]:,} x {shape[1]} in {infer_seconds:.1f} s = "
                  f"{shape[0] / infer_seconds:,.0f} nodes/s"),
    ]  # fmt: skip
    if clustered is not None:
        rows += cluster_rows(clustered, args, meta["edges"])
    if converted["seconds"] is not None:
        rows.insert(3, ("convert", f"{converted['seconds']:.0f} s (in a child process)"))
    for key, value in rows:
        print(f"{key:<18} {value}")
    print("stage     peak RSS          peak anonymous    peak mapped files  growth")
    stages = [("open", open_peaks), ("train", train_peaks), ("infer", infer_peaks)]
    stages = [(name, p.peaks()) for name, p in stages]
    if converted["seconds"] is not None:
        stages.insert(0, ("convert", converted["peaks"]))
    if clustered is not None:
        stages += [(name, peaks) for name, (_, _, peaks) in clustered["stages"].items()]
    for name, peaks in stages:
        print(f"{name:<9} " + "  ".join(f"{b / GB:6.2f} GB {b / data:6.1%}" for b in peaks))
    if not args.keep:
        shutil.rmtree(args.store)
        print(f"deleted {args.store}")
        if clustered is not None:
            emb_path.unlink()
            print(f"deleted {emb_path}")


def cluster_rows(clustered: dict, args: argparse.Namespace, edges: int) -> list[tuple[str, str]]:
    """The result lines of the fit, assign and metrics stages."""
    stages = clustered["stages"]
    (fit_s, sampled, _), (assign_s, nodes, _) = stages["fit"], stages["assign"]
    metrics_s = stages["metrics"][0]
    quality = ", ".join(f"{k.upper()} {100 * clustered['metrics'][k]:.2f}"
                        for k in ("nmi", "ari", "acc", "modularity", "conductance"))  # fmt: skip
    return [
        ("fit", f"{sampled:,} sampled rows, k={args.clusters}, n_init={args.n_init}, in "
                f"{fit_s:.1f} s"),
        ("assign", f"{nodes:,} nodes in {assign_s:.1f} s = {nodes / assign_s:,.0f} nodes/s"),
        ("metrics", f"{nodes:,} nodes, {edges:,} edges in {metrics_s:.1f} s = "
                    f"{nodes / metrics_s:,.0f} nodes/s"),
        ("vs planted", quality),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
