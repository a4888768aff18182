"""``agc infer RUN_DIR``: embeddings for every node (or a subset) with the fallback chain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.train import peak_line
from agc_cli.data.graph import Graph
from agc_cli.engine.inference import InferenceResult
from agc_cli.engine.inference import infer as run_inference
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.runtime import configure_threads, resolve_device
from agc_cli.engine.session import load_trained
from agc_cli.errors import DataError, UsageError
from agc_cli.models.base import ClusteringModel
from agc_cli.settings import Settings
from agc_cli.utils.io import atomic_torch_save, atomic_write, reading

EMBEDDINGS_FILE = "embeddings.pt"


def infer(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `agc train`.")],
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", help="Weights file (default: best, else final)."),
    ] = None,
    nodes: Annotated[
        Path | None,
        typer.Option("--nodes", help="File of node ids (.npy, .pt or text) to embed."),
    ] = None,
    labeled: Annotated[
        bool, typer.Option("--labeled", help="Embed only the labeled nodes.")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="Also write embeddings.npy with 'npy'.")
    ] = "pt",
    device: o.Device = None,
    infer_batch_size: o.InferBatchSize = None,
    infer_fan_out: o.InferFanOut = None,
) -> None:
    """Compute embeddings with the run's best weights; writes embeddings.pt into the run.

    A subset (--nodes FILE, --labeled) goes to its own file, embeddings-<name>.pt, and never
    replaces the all-node embeddings; cluster it with --embeddings embeddings-<name>.pt.
    """
    if fmt not in ("pt", "npy"):
        raise UsageError(f"--format: expected pt or npy, got {fmt!r}")
    if nodes is not None and labeled:
        raise UsageError("--nodes and --labeled are mutually exclusive")
    run = RunDir.open(run_dir)
    settings, model, graph = load_trained(run, checkpoint)
    overrides = {"device": device, "infer_batch_size": infer_batch_size,
                 "infer_fan_out": infer_fan_out}  # fmt: skip
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    ids = _select_nodes(graph, nodes, labeled)
    result = embed(model, graph, settings, ids)
    write_embeddings(run.path, result, graph, settings, fmt, subset_name(nodes, labeled))


def subset_name(nodes: Path | None, labeled: bool) -> str | None:
    """The tag of a subset's embeddings file: ``labeled`` or the node file's name."""
    if labeled:
        return "labeled"
    if nodes is None:
        return None
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodes.stem) or "nodes"


def embeddings_file(subset: str | None) -> str:
    """``embeddings.pt`` for every node, ``embeddings-<subset>.pt`` for a subset."""
    return EMBEDDINGS_FILE if subset is None else f"embeddings-{subset}.pt"


def embed(
    model: ClusteringModel, graph: Graph, settings: Settings, ids: torch.Tensor | None
) -> InferenceResult:
    """Run the fallback chain, reporting each step and the outcome on stderr."""
    configure_threads()
    dev = resolve_device(settings.device)
    result = run_inference(
        model, graph, dev,
        full_batch=settings.force_full_batch_inference or settings.mini_batch is False,
        allow_cpu_fallback=settings.allow_cpu_fallback,
        batch_size=settings.infer_batch_size,
        fan_out=settings.infer_fan_out,
        nodes=ids,
        seed=settings.seed,
        report=render.note,
    )  # fmt: skip
    render.note(
        f"Inference: {result.mode}, {result.embeddings.shape[0]:,} × "
        f"{result.embeddings.shape[1]} in {result.seconds:.2f} s; peak {peak_line(result.peak)}"
    )
    return result


def write_embeddings(
    directory: Path, result: InferenceResult, graph: Graph, settings: Settings, fmt: str = "pt",
    subset: str | None = None,
) -> Path:  # fmt: skip
    """Write ``embeddings.pt`` (``embeddings-<subset>.pt`` for a subset of the nodes)."""
    path = directory / embeddings_file(subset)
    atomic_torch_save(
        {
            "embeddings": result.embeddings,
            "node_ids": result.node_ids,
            "dataset": graph.name,
            "model": settings.model,
            "mode": result.mode,
        },
        path,
    )
    written = [path]
    if fmt == "npy":
        tag = "" if subset is None else f"-{subset}"
        written += [directory / f"embeddings{tag}.npy", directory / f"node_ids{tag}.npy"]
        atomic_write(written[1], lambda fh: np.save(fh, result.embeddings.numpy()))
        atomic_write(written[2], lambda fh: np.save(fh, result.node_ids.numpy()))
    count = f"{result.node_ids.numel():,} of {graph.num_nodes:,} nodes"
    render.note(f"wrote {', '.join(map(str, written))} ({count})")
    if subset is not None:
        render.note(f"cluster it with: agc cluster {directory} --embeddings {path.name}")
    return path


def _select_nodes(graph: Graph, nodes: Path | None, labeled: bool) -> torch.Tensor | None:
    if labeled:
        if graph.y is None:
            raise DataError(f"{graph.name} has no labels; --labeled needs them")
        return (graph.y >= 0).nonzero().view(-1)
    if nodes is None:
        return None
    ids = read_node_ids(nodes)
    if ids.numel() == 0:
        raise DataError(f"{nodes}: no node ids")
    if int(ids.min()) < 0 or int(ids.max()) >= graph.num_nodes:
        raise DataError(f"{nodes}: node ids must be in [0, {graph.num_nodes})")
    return ids


def read_node_ids(path: Path) -> torch.Tensor:
    """Node ids from ``.npy``, ``.pt`` (a tensor) or a text file (one id per line)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with reading(path, "not a list of node ids"):
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        elif path.suffix == ".pt":
            values = torch.load(path, weights_only=True).numpy()
        else:
            values = np.loadtxt(path, dtype=np.int64, ndmin=1, delimiter=",")
    if not np.issubdtype(np.asarray(values).dtype, np.integer):
        raise DataError(f"{path}: node ids must be integers")
    return torch.from_numpy(np.asarray(values, dtype=np.int64).reshape(-1))
