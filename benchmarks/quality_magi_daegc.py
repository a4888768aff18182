"""Clustering quality of MAGI and DAEGC with their default presets on Cora, full-batch, CPU.

Trains with agc's trainer (full-batch), embeds every node, k-means (sklearn, k = 7,
n_init = 10) on the embeddings (L2-normalised when the preset says so) and NMI against the
labels; compare with PyAGC's published NMI (../shared/data/REFERENCE.md).

    python benchmarks/quality_magi_daegc.py --model magi
    python benchmarks/quality_magi_daegc.py --model daegc --seeds 0 1 2 --set lr=0.005
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
from agc_cli.engine.session import build_model
from agc_cli.engine.trainer import Trainer
from agc_cli.models import GraphBatch
from agc_cli.models.base import ClusteringModel
from agc_cli.models.daegc import DAEGC
from agc_cli.models.magi import MAGI
from agc_cli.presets import model_preset
from agc_cli.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REFERENCE_NMI = {"magi": 58.94, "daegc": 46.88}
MODELS: dict[str, type[ClusteringModel]] = {"magi": MAGI, "daegc": DAEGC}


# The proposed presets, used until agc_cli/presets.py has entries for these models.
def run(name: str, seed: int, graph: Graph, overrides: dict[str, str]) -> tuple[float, float]:
    """Train one model; return (NMI x 100, training seconds)."""
    preset = model_preset(name, "Cora")
    settings = Settings(**{**preset, **overrides, "model": name, "seed": seed, "mini_batch": False})
    torch.manual_seed(seed)
    model = build_model(settings, graph.num_features, graph.num_nodes, graph.num_classes)
    trainer = Trainer(graph, model, settings, torch.device("cpu"), mini_batch=False)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        z = model.embed(GraphBatch.full(graph))
    nmi = kmeans_nmi(z, graph.y.numpy(), graph.num_classes, seed, settings.normalize_embeddings)
    return nmi, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    add_common_args(parser, seeds=[0])
    args = parser.parse_args()
    overrides = apply_common_args(args)
    with tempfile.TemporaryDirectory() as cache:
        graph = load_graph("Cora", DATA, Path(cache))
    scores = []
    for seed in args.seeds:
        nmi, seconds = run(args.model, seed, graph, overrides)
        scores.append(nmi)
        print(f"{args.model:6s} seed {seed}: NMI {nmi:6.2f}  train {seconds:6.1f}s", flush=True)
    mean = sum(scores) / len(scores)
    print(f"{args.model:6s} mean NMI {mean:6.2f}  (PyAGC {REFERENCE_NMI[args.model]:.2f})")


if __name__ == "__main__":
    main()
