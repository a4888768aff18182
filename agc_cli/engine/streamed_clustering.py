"""Clusters and metrics for every node when the embeddings (or the graph) exceed RAM.

Each of ``runs`` k-means runs fits on a uniform sample of the rows
(:func:`agc_cli.cluster.streaming.fit_sample`), then assigns every row in one streamed pass,
the labels going to disk as they come; label metrics are taken on the labeled nodes and
modularity/conductance stream the CSC topology in blocks of columns. What stays resident: the
sample, one block of rows or edges, and the labels of the run being scored (int32 per node).
A store's topology and labels are read from its files without mapping them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agc_cli.cluster.streaming import (
    assign_blocks,
    fit_sample,
    streamed_label_metrics,
    streamed_structure_metrics,
)
from agc_cli.data.graph import Graph
from agc_cli.data.store import StoredGraph, data_bytes, store_file
from agc_cli.engine.clustering import ClusterRun, summarize
from agc_cli.errors import DataError, UsageError
from agc_cli.utils.npy import open_npy

# Embeddings files larger than this fraction of the available memory are clustered out of core
# unless the user says otherwise: loading them whole would leave too little for k-means.
OUT_OF_CORE_FRACTION = 0.25

# A stage of work with a known total (rows or edges): a context manager yielding
# ``advance(done)``; the CLI passes a progress bar.
Stage = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def _silent_stage(label: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda done: None


@dataclass
class StreamedClustering:
    """Outcome of :func:`cluster_streamed`.

    Attributes:
        labels_file: ``.npy`` int32 ``[N]``: the cluster of every node from the best run
            (lowest inertia).
        runs: one record per run, its metrics over every node (label metrics on the labeled).
        n_clusters: ``k``.
        sample_rows: the rows each run's k-means was fitted on.
    """

    labels_file: Path
    runs: list[ClusterRun]
    n_clusters: int
    sample_rows: int
    summary: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, std


def out_of_core_default(path: Path) -> bool:
    """Whether embeddings in ``path`` are clustered out of core when the user did not say:
    an ``.npy`` larger than :data:`OUT_OF_CORE_FRACTION` of the available memory."""
    import psutil

    if path.suffix != ".npy" or not path.is_file():
        return False
    return path.stat().st_size > OUT_OF_CORE_FRACTION * psutil.virtual_memory().available


def run_out_of_core_default(graph: Graph, width: int, available: int | None = None) -> bool:
    """Whether ``agc run`` streams the embeddings into an ``.npy`` and clusters them out of
    core when the user did not say: ``graph`` is an on-disk store whose files exceed the
    ``available`` memory, or whose embeddings (``width`` float32 columns per node) would
    exceed :data:`OUT_OF_CORE_FRACTION` of it. In-memory graphs are clustered in memory."""
    if not isinstance(graph, StoredGraph):
        return False
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    data = data_bytes(graph.meta)
    return data > available or graph.num_nodes * width * 4 > OUT_OF_CORE_FRACTION * available


def open_embeddings(path: Path, num_nodes: int) -> np.ndarray:
    """``path`` (an ``.npy`` ``[N, D]`` of floats, one row per node) memory-mapped read-only.

    Raises:
        DataError: not a 2-D float array with one row for each of the ``num_nodes`` nodes.
        UsageError: another format than ``.npy``.
    """
    if path.suffix != ".npy":
        raise UsageError(
            f"out-of-core clustering reads an .npy matrix; {path.name} is not one "
            "(write one with `agc infer --format npy`)"
        )
    data = open_npy(path)
    if data.ndim != 2 or 0 in data.shape or not np.issubdtype(data.dtype, np.floating):
        raise DataError(f"{path}: expected [N, D] float embeddings (N, D >= 1), got "
                        f"{data.dtype} {list(data.shape)}")  # fmt: skip
    if data.shape[0] != num_nodes:
        raise DataError(
            f"{path}: {data.shape[0]:,} rows for the graph's {num_nodes:,} nodes; an .npy "
            "matrix needs one row per node"
        )
    return data


def cluster_streamed(
    embeddings: Any,
    graph: Graph,
    labels_file: Path,
    *,
    n_clusters: int | None,
    runs: int,
    seed: int,
    normalize: bool,
    backend: str = "auto",
    device: torch.device | str = "cpu",
    structure: bool = True,
    sample: int | None = None,
    n_init: int = 10,
    report: Callable[[int, ClusterRun], None] | None = None,
    stage: Stage | None = None,
) -> StreamedClustering:
    """``runs`` out-of-core k-means runs (seeds ``seed, seed+1, ...``) over every node.

    Args:
        embeddings: ``[N, D]``, one row per node of ``graph`` (a memory-mapped ``.npy``).
        labels_file: where the best run's labels go (written when every run is done).
        n_clusters: default the graph's number of classes.
        backend: k-means backend fitted on the sample; ``"auto"`` is ``"minibatch"``.
        structure: also stream modularity and conductance over the topology.
        sample: rows fitted on (default :func:`agc_cli.cluster.streaming.sample_size`).
        report: called after each run.
        stage: opens a progress bar for each pass (see :data:`Stage`).
    """
    k = n_clusters or graph.num_classes
    if not k:
        raise UsageError("n_clusters: unknown; the dataset has no labels, pass --n-clusters")
    if int(embeddings.shape[0]) != graph.num_nodes:
        raise DataError(
            f"{embeddings.shape[0]:,} embeddings rows for the graph's {graph.num_nodes:,} nodes"
        )
    fit_backend = "minibatch" if backend == "auto" else backend
    stage = stage or _silent_stage
    topology = _topology(graph) if structure else None
    y = _store_array(graph, "y") if graph.y is not None else None
    labels_file = Path(labels_file)
    best_file = labels_file.with_name(f".{labels_file.name}.{os.getpid()}.best.npy")
    run_file = labels_file.with_name(f".{labels_file.name}.{os.getpid()}.run.npy")
    results: list[ClusterRun] = []
    best = float("inf")
    size = 0
    try:
        for i in range(runs):
            t0 = time.perf_counter()
            fit, size = fit_sample(
                embeddings, k, seed=seed + i, sample=sample, n_init=n_init, backend=fit_backend,
                normalize=normalize, device=device,
            )  # fmt: skip
            rows = int(embeddings.shape[0])
            with stage(f"run {i + 1}/{runs}: assigning", rows) as advance:
                assignment = assign_blocks(
                    embeddings, fit.centroids, run_file, normalize=normalize, device=device,
                    progress=advance,
                )  # fmt: skip
            pred = np.load(run_file)  # the labels of every node: resident for the metrics
            metrics = streamed_label_metrics(pred, y) if y is not None else {}
            if topology is not None:
                with stage(f"run {i + 1}/{runs}: structure metrics", graph.num_edges) as advance:
                    metrics.update(streamed_structure_metrics(pred, *topology, progress=advance))
            del pred
            run = ClusterRun(
                seed + i, metrics, assignment.inertia, time.perf_counter() - t0, fit.backend
            )
            results.append(run)
            if assignment.inertia < best:
                best = assignment.inertia
                os.replace(run_file, best_file)
            if report is not None:
                report(i, run)
        os.replace(best_file, labels_file)
    finally:
        run_file.unlink(missing_ok=True)
        best_file.unlink(missing_ok=True)
    return StreamedClustering(labels_file, results, k, size, summarize(results))


def _topology(graph: Graph) -> tuple[Any, Any]:
    """CSC ``colptr`` and ``row``: a store's files memory-mapped (read unmapped, in blocks),
    else the graph's tensors."""
    return _store_array(graph, "colptr"), _store_array(graph, "row")


def _store_array(graph: Graph, name: str) -> Any:
    """A store's file ``name`` as a read-only map of the whole file (so that
    :func:`agc_cli.utils.npy.read_rows` reads it without mapping); an in-memory graph's
    tensor otherwise."""
    if isinstance(graph, StoredGraph) and name in graph.meta.get("files", {}):
        return open_npy(store_file(graph.path, graph.meta["files"][name]["file"]))
    return getattr(graph, name)
