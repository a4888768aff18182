"""Clustering of node embeddings (k-means backends) and clustering quality metrics."""

from agc_cli.cluster.kmeans import BACKENDS, KMeansResult, choose_backend, kmeans, kmeans_runs
from agc_cli.cluster.metrics import (
    cluster_accuracy,
    evaluate,
    label_metrics,
    matched_macro_f1,
    structure_metrics,
)

__all__ = [
    "BACKENDS",
    "KMeansResult",
    "choose_backend",
    "cluster_accuracy",
    "evaluate",
    "kmeans",
    "kmeans_runs",
    "label_metrics",
    "matched_macro_f1",
    "structure_metrics",
]
