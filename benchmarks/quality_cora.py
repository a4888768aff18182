"""Clustering quality of each method's default preset on Cora, full-batch, CPU.

A minimal Adam loop (not agc's trainer) so the numbers depend on the models and presets only:
train for the preset's epochs, embed every node, k-means (sklearn, k = 7, n_init = 10) and NMI
against the labels; compare with PyAGC's published NMI (../shared/data/REFERENCE.md).

    python benchmarks/quality_cora.py --model dgi --seeds 0 1 2
    python benchmarks/quality_cora.py --model all
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from quality_common import add_common_args, apply_common_args, kmeans_nmi

from agc_cli.data.sources import load_graph
from agc_cli.engine.session import build_model
from agc_cli.models import MODELS, GraphBatch
from agc_cli.presets import model_preset
from agc_cli.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REFERENCE_NMI = {"dgi": 56.22, "gae": 50.09, "ccassg": 58.74, "dmon": 43.84}


def run(model_name: str, seed: int, graph, overrides: dict) -> tuple[float, float]:
    """Train one model; return (NMI x 100, training seconds)."""
    settings = Settings(**{**model_preset(model_name, "Cora"), **overrides, "model": model_name})
    torch.manual_seed(seed)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    batch = GraphBatch.full(graph)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    start = time.perf_counter()
    model.train()
    for _ in range(settings.epochs):
        optimizer.zero_grad()
        model.loss(batch).loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        z = model.embed(batch)
    nmi = kmeans_nmi(z, graph.y.numpy(), graph.num_classes, seed, settings.normalize_embeddings)
    return nmi, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all", help="a method name or 'all'")
    add_common_args(parser, seeds=[0])
    args = parser.parse_args()
    overrides = apply_common_args(args)
    names = sorted(MODELS) if args.model == "all" else [args.model.lower()]
    with tempfile.TemporaryDirectory() as cache:
        graph = load_graph("Cora", DATA, Path(cache))
    for name in names:
        scores = []
        for seed in args.seeds:
            nmi, seconds = run(name, seed, graph, overrides)
            scores.append(nmi)
            print(f"{name:8s} seed {seed}: NMI {nmi:6.2f}  train {seconds:5.1f}s", flush=True)
        mean = sum(scores) / len(scores)
        print(
            f"{name:8s} mean NMI {mean:6.2f}  (PyAGC {REFERENCE_NMI.get(name, float('nan')):.2f})"
        )


if __name__ == "__main__":
    main()
