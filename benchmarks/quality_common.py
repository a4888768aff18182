"""Shared by the ``quality_*.py`` scripts: their common flags and the k-means NMI they report."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score


def add_common_args(parser: argparse.ArgumentParser, seeds: list[int]) -> None:
    """``--seeds``, ``--threads`` and ``--set KEY=VALUE`` settings overrides."""
    parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings overrides"
    )


def apply_common_args(args: argparse.Namespace) -> dict[str, str]:
    """Set the thread count; return the ``--set`` overrides as a dict."""
    torch.set_num_threads(args.threads)
    return dict(item.split("=", 1) for item in args.set)


def kmeans_nmi(z: torch.Tensor, labels, clusters: int, seed: int, normalize: bool) -> float:
    """NMI × 100 of scikit-learn k-means (10 inits, ``seed``) on ``z`` (L2-normalised first
    when the method's preset says so) against ``labels``."""
    if normalize:
        z = F.normalize(z, dim=1)
    predicted = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(z.numpy())
    return 100 * normalized_mutual_info_score(labels, predicted)
