"""k-means runs on embeddings and their metrics (label metrics and structure metrics)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from agc_cli.cluster import evaluate, kmeans_runs
from agc_cli.data.graph import Graph
from agc_cli.engine.runtime import threads_within_free_cores
from agc_cli.errors import UsageError


@dataclass
class ClusterRun:
    seed: int
    metrics: dict[str, float]
    inertia: float
    seconds: float  # its k-means (runs batched together share theirs) plus its metrics
    backend: str


@dataclass
class ClusteringResult:
    labels: Tensor  # clusters of the best run (lowest inertia)
    runs: list[ClusterRun]
    n_clusters: int
    summary: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, std


def summarize(runs: list[ClusterRun]) -> dict[str, tuple[float, float]]:
    keys = [k for k in runs[0].metrics if all(k in r.metrics for r in runs)]
    out = {}
    for key in keys:
        values = [r.metrics[key] for r in runs]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
        out[key] = (mean, math.sqrt(var))
    return out


def cluster_embeddings(
    embeddings: Tensor,
    graph: Graph | None,
    *,
    node_ids: Tensor | None = None,
    n_clusters: int | None,
    runs: int,
    seed: int,
    normalize: bool,
    n_init: int = 10,
    backend: str = "auto",
    device: torch.device | str = "cpu",
    structure: bool = True,
    report: Callable[[int, ClusterRun], None] | None = None,
) -> ClusteringResult:
    """``runs`` k-means runs with seeds ``seed, seed+1, ...``, each evaluated.

    Each run is the best of ``n_init`` k-means++ restarts; the runs are reported apart, so
    their spread shows how much the clustering depends on the k-means seed.

    Args:
        embeddings: ``[n, D]`` rows for ``node_ids`` (default every node of ``graph``).
        graph: gives labels and topology for the metrics (None: inertia only).
        n_clusters: default the graph's number of classes.
        structure: also compute modularity/conductance (on the subgraph of ``node_ids``).
        report: called after each run (the CLI prints ``Run i/R: ...``).
    """
    k = n_clusters or (graph.num_classes if graph is not None else None)
    if not k:
        raise UsageError("n_clusters: unknown; the dataset has no labels, pass --n-clusters")
    # Metrics run on full-length arrays; a node subset is a mask (label metrics on its nodes,
    # structure metrics on the subgraph it induces), which `evaluate` supports itself.
    y = graph.y if graph is not None else None
    colptr, row = (graph.colptr, graph.row) if graph is not None and structure else (None, None)
    subset = graph is not None and node_ids is not None
    results: list[ClusterRun] = []
    best: tuple[float, Tensor] | None = None
    # The k-means runs are batched where memory allows (kmeans_runs); each is scored and
    # reported as it arrives.
    fits = kmeans_runs(
        embeddings,
        k,
        seeds=[seed + i for i in range(runs)],
        n_init=n_init,
        backend=backend,
        normalize=normalize,
        device=device,
    )
    for i in range(runs):
        with threads_within_free_cores():
            res = next(fits)
        t0 = time.perf_counter()
        if subset:
            pred = torch.zeros(graph.num_nodes, dtype=torch.long)
            pred[node_ids] = res.labels
            metrics = evaluate(pred, y, colptr, row, mask=node_ids)
        else:
            metrics = evaluate(res.labels, y, colptr, row)
        seconds = res.seconds + time.perf_counter() - t0
        run = ClusterRun(seed + i, metrics, res.inertia, seconds, res.backend)
        results.append(run)
        if best is None or res.inertia < best[0]:
            best = (res.inertia, res.labels)
        if report is not None:
            report(i, run)
    return ClusteringResult(best[1], results, k, summarize(results))
