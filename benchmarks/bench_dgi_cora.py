"""DGI on Cora, full-batch on CPU: agc's model against PyG's ``DeepGraphInfomax``.

Both train the same model (one GCN layer of 512 channels with PReLU, bilinear discriminator,
row-shuffling corruption, Adam at lr 0.001) for 300 epochs in this process. PyG's side is
written as PyG's DGI example does it: dense features and ``GCNConv`` over ``edge_index``.
agc keeps the bag-of-words features sparse through the first transform, propagates over a
cached sparse adjacency and reuses the clean transform for the corrupted pass. Target: agc
takes at most 0.3x PyG's time.

    python benchmarks/bench_dgi_cora.py [--epochs 300] [--repeats 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch_geometric.nn import DeepGraphInfomax, GCNConv

from agc_cli.data.sources import load_graph
from agc_cli.models import GraphBatch
from agc_cli.models.dgi import DGI
from agc_cli.presets import model_preset
from agc_cli.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HIDDEN = 512


class PyGEncoder(nn.Module):
    """The encoder of PyG's DGI example (examples/infomax_transductive.py)."""

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.conv = GCNConv(in_channels, hidden_channels)
        self.prelu = nn.PReLU(hidden_channels)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.conv(x, edge_index))


def corruption(x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[torch.randperm(x.size(0))], edge_index


def summary(z: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return torch.sigmoid(z.mean(dim=0))


def time_agc(graph, epochs: int) -> tuple[float, float]:
    settings = Settings(**model_preset("dgi", "Cora"))
    assert (settings.gnn_type, settings.num_layers, settings.hidden_channels) == ("gcn", 1, HIDDEN)
    torch.manual_seed(0)
    model = DGI.from_settings(graph.num_features, graph.num_nodes, graph.num_classes, settings)
    batch = GraphBatch.full(graph)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    start = time.perf_counter()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = model.loss(batch).loss
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, loss.item()


def time_pyg(graph, epochs: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = DeepGraphInfomax(
        HIDDEN, PyGEncoder(graph.num_features, HIDDEN), summary=summary, corruption=corruption
    )
    x, edge_index = graph.dense_features(), graph.edge_index()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    start = time.perf_counter()
    for _ in range(epochs):
        optimizer.zero_grad()
        pos_z, neg_z, s = model(x, edge_index)
        loss = model.loss(pos_z, neg_z, s)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1, help="alternate runs; best of each")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        graph = load_graph("Cora", DATA, Path(cache))
    agc_times, pyg_times = [], []
    for _ in range(args.repeats):
        seconds, agc_loss = time_agc(graph, args.epochs)
        agc_times.append(seconds)
        seconds, pyg_loss = time_pyg(graph, args.epochs)
        pyg_times.append(seconds)
    agc, pyg = min(agc_times), min(pyg_times)
    print(f"Cora DGI, GCN 1 layer x {HIDDEN}, {args.epochs} epochs, {args.threads} threads")
    print(f"agc DGI          {agc:7.2f} s   final loss {agc_loss:.4f}")
    print(f"PyG DGI+GCNConv  {pyg:7.2f} s   final loss {pyg_loss:.4f}")
    print(f"ratio agc / PyG  {agc / pyg:7.3f}   (target <= 0.3)")


if __name__ == "__main__":
    main()
