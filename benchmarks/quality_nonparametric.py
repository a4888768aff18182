"""Clustering quality of the training-free methods (SGC, SSGC, S2CAG, M-S2CAG), CPU.

Each method's preset for the dataset, full-batch embedding (``--layerwise``: exact layer-wise
inference in batches instead), then k-means (sklearn, k = classes, n_init = 10, one run per
seed) on the L2-normalised embeddings when the preset says ``normalize_embeddings``, and NMI
against the labels; compare with PyAGC's published NMI (../shared/data/REFERENCE.md).

    python benchmarks/quality_nonparametric.py --model ssgc
    python benchmarks/quality_nonparametric.py --model all --dataset Photo --seeds 0 1 2
    python benchmarks/quality_nonparametric.py --model ms2cag --set num_layers=8 alpha=0.9
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from quality_common import add_common_args, apply_common_args, kmeans_nmi

from agc_cli.data.graph import Graph
from agc_cli.data.sources import load_graph
from agc_cli.engine.inference import layerwise
from agc_cli.models import GraphBatch
from agc_cli.models.propagation import SGC, SSGC
from agc_cli.models.s2cag import MS2CAG, S2CAG
from agc_cli.presets import model_preset
from agc_cli.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
METHODS = {cls.name: cls for cls in (SGC, SSGC, S2CAG, MS2CAG)}
REFERENCE_NMI = {
    "Cora": {"ssgc": 51.85, "ms2cag": 53.64},
    "Photo": {"ssgc": 70.75, "ms2cag": 72.49},
}


def embed(
    name: str, graph: Graph, overrides: dict, by_layer: bool
) -> tuple[torch.Tensor, float, bool]:
    """Embeddings of every node with the preset; returns (embeddings, seconds, whether the
    preset L2-normalises them before k-means)."""
    settings = Settings(**{**model_preset(name, graph.name), **overrides, "model": name})
    model = METHODS[name].from_settings(
        graph.num_features, graph.num_nodes, graph.num_classes, settings
    )
    start = time.perf_counter()
    with torch.no_grad():
        if by_layer:
            z = layerwise(model, graph, torch.device("cpu"), settings.infer_batch_size)
        else:
            z = model.embed(GraphBatch.full(graph))
    seconds = time.perf_counter() - start
    return z, seconds, settings.normalize_embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all", help=f"one of {', '.join(METHODS)} or 'all'")
    parser.add_argument("--dataset", default="Cora", help="Cora, CiteSeer, Photo or Physics")
    add_common_args(parser, seeds=[0, 1, 2])
    parser.add_argument("--layerwise", action="store_true", help="exact layer-wise inference")
    args = parser.parse_args()
    overrides = apply_common_args(args)
    names = list(METHODS) if args.model == "all" else [args.model.lower()]
    with tempfile.TemporaryDirectory() as cache:
        graph = load_graph(args.dataset, DATA, Path(cache))
    labels = graph.y.numpy()
    for name in names:
        z, seconds, normalize = embed(name, graph, overrides, args.layerwise)
        scores = []
        start = time.perf_counter()
        for seed in args.seeds:
            scores.append(kmeans_nmi(z, labels, graph.num_classes, seed, normalize))
        kmeans_seconds = (time.perf_counter() - start) / len(args.seeds)
        mean = sum(scores) / len(scores)
        spread = max(scores) - min(scores)
        reference = REFERENCE_NMI.get(graph.name, {}).get(name, float("nan"))
        print(
            f"{graph.name} {name:7s} NMI {mean:6.2f} (range {spread:4.2f}, {len(scores)} seeds)  "
            f"PyAGC {reference:6.2f}  embed {seconds:6.2f}s  k-means {kmeans_seconds:5.2f}s/run  "
            f"dim {z.shape[1]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
