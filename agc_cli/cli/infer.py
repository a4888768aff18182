"""``agc infer RUN_DIR``: embeddings for every node (or a subset) with the fallback chain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import InferReport
from agc_cli.errors import DataError, UsageError

if TYPE_CHECKING:
    import torch

    from agc_cli.data.graph import Graph


def infer(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `agc train`.")],
    checkpoint: o.Checkpoint = None,
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
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Write only embeddings.npy, batch by batch as inference produces them: every "
            "node, never all in memory (graphs larger than RAM; cluster with --out-of-core).",
        ),
    ] = False,
    float16: Annotated[
        bool, typer.Option("--float16", help="With --stream: float16 embeddings (half the file).")
    ] = False,
    device: o.Device = None,
    infer_batch_size: o.InferBatchSize = None,
    infer_fan_out: o.InferFanOut = None,
    verify: o.Verify = False,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Compute embeddings with the run's best weights; writes embeddings.pt into the run.

    A subset (--nodes FILE, --labeled) goes to its own file, embeddings-<name>.pt, and never
    replaces the all-node embeddings; cluster it with --embeddings embeddings-<name>.pt.
    """
    render.configure(json_out, quiet, verbose)
    overrides = o.settings_flags(locals(), exclude=("run_dir",))
    if fmt not in ("pt", "npy"):
        raise UsageError(f"--format: expected pt or npy, got {fmt!r}")
    if nodes is not None and labeled:
        raise UsageError("--nodes and --labeled are mutually exclusive")
    if stream and (nodes is not None or labeled):
        raise UsageError("--stream embeds every node; drop --nodes/--labeled")
    if float16 and not stream:
        raise UsageError("--float16 applies to --stream")
    from agc_cli.engine.rundir import RunDir
    from agc_cli.settings import load_settings

    run = RunDir.open(run_dir)
    # The overrides are validated together with the run's settings before anything loads.
    checked = load_settings({**run.read_settings(), **overrides})
    render.settings_detail(checked)
    if verify:
        common.verify_dataset(checked.dataset)
    wanted = read_node_ids(nodes) if nodes is not None else None
    from agc_cli.engine.session import load_trained

    settings, model, graph, weights = load_trained(run, checkpoint)
    # Recorded with the embeddings, so `agc cluster` can tell when the run's weights moved on.
    provenance = run.weights_provenance(weights, explicit=checkpoint is not None)
    settings = settings.model_copy(update={k: getattr(checked, k) for k in overrides})
    if stream:
        dtype = "float16" if float16 else "float32"
        render.emit(common.embed_to_npy(run.path, model, graph, settings, dtype), show)
        return
    ids = _select_nodes(graph, nodes, wanted, labeled)
    result = common.embed(model, graph, settings, ids)
    report = common.write_embeddings(
        run.path, result, graph, settings, fmt, subset_name(nodes, labeled), provenance
    )
    render.emit(report, show)


def show(report: InferReport) -> None:
    render.line(common.infer_line(report))
    render.line(f"Embeddings: {', '.join(map(str, report.files))} "
                f"({report.nodes:,} of {report.total_nodes:,} nodes)")  # fmt: skip


def subset_name(nodes: Path | None, labeled: bool) -> str | None:
    """The tag of a subset's embeddings file: ``labeled`` or the node file's name."""
    if labeled:
        return "labeled"
    if nodes is None:
        return None
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodes.stem) or "nodes"


def _select_nodes(
    graph: Graph, nodes: Path | None, ids: torch.Tensor | None, labeled: bool
) -> torch.Tensor | None:
    """The labeled nodes, or the ids read from ``nodes`` checked against the graph."""
    if labeled:
        if graph.y is None:
            raise DataError(f"{graph.name} has no labels; --labeled needs them")
        return (graph.y >= 0).nonzero().view(-1)
    if ids is None:
        return None
    if ids.numel() == 0:
        raise DataError(f"{nodes}: no node ids")
    if int(ids.min()) < 0 or int(ids.max()) >= graph.num_nodes:
        raise DataError(f"{nodes}: node ids must be in [0, {graph.num_nodes})")
    return ids


def read_node_ids(path: Path) -> torch.Tensor:
    """Node ids from ``.npy``, ``.pt`` (a tensor) or a text file (one id per line)."""
    import numpy as np
    import torch

    from agc_cli.utils.io import reading

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
