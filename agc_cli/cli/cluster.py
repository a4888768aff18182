"""``agc cluster``: k-means on a run's embeddings, label and structure metrics, plots."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.infer import EMBEDDINGS_FILE
from agc_cli.data.graph import Graph
from agc_cli.data.sources import load_graph
from agc_cli.engine.clustering import ClusteringResult, ClusterRun, cluster_embeddings
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.runtime import configure_threads, resolve_device
from agc_cli.errors import DataError, UsageError
from agc_cli.settings import Settings, load_settings
from agc_cli.utils.io import atomic_write_json, atomic_write_text

LABEL_KEYS = ("nmi", "ari", "acc", "f1", "homogeneity", "completeness")
SHOWN = ("nmi", "ari", "acc", "f1", "modularity", "conductance")


def cluster(
    run_dir: Annotated[
        Path | None, typer.Argument(help="Run directory holding embeddings.pt.")
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option("--embeddings", help="Embeddings file (.pt from agc infer, or .npy)."),
    ] = None,
    n_clusters: o.NClusters = None,
    runs: Annotated[int | None, typer.Option("--runs", help="Independent k-means runs.")] = None,
    normalize: Annotated[
        bool | None,
        typer.Option("--normalize/--no-normalize", help="L2-normalise embeddings first."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="auto, sklearn, torch or minibatch.")
    ] = None,
    structure: Annotated[
        bool, typer.Option("--structure/--no-structure", help="Modularity and conductance.")
    ] = True,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw a 2-D projection coloured by cluster.")
    ] = None,
    projection: Annotated[str, typer.Option("--projection", help="pca or tsne.")] = "pca",
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Where clusters.csv/metrics.json go.")
    ] = None,
    json_out: o.Json = False,
    dataset: o.Dataset = None,
    root: o.Root = None,
    cache_dir: o.CacheDir = None,
    seed: o.Seed = None,
    device: o.Device = None,
    config: o.Config = None,
) -> None:
    """Cluster embeddings with k-means and report NMI/ARI/ACC/F1, modularity, conductance."""
    if (run_dir is None) == (embeddings is None):
        raise UsageError("give a RUN_DIR or --embeddings FILE (with --dataset), not both")
    flags = o.settings_flags(dict(
        n_clusters=n_clusters, runs=runs, normalize_embeddings=normalize,
        kmeans_backend=backend, dataset=dataset, root=root, cache_dir=cache_dir, seed=seed,
        device=device,
    ))  # fmt: skip
    if run_dir is not None:
        run = RunDir.open(run_dir)
        settings = load_settings({**run.read_settings(), **flags})
        emb_path = run.path / EMBEDDINGS_FILE
        if not emb_path.is_file():
            raise DataError(f"{emb_path} not found; run `agc infer {run.path}` first")
        out_dir = output_dir or run.path
    else:
        settings = load_settings(flags, config)
        emb_path = embeddings
        out_dir = output_dir or embeddings.parent
    if projection not in ("pca", "tsne"):
        raise UsageError(f"--projection: expected pca or tsne, got {projection!r}")
    emb, ids = read_embeddings(emb_path)
    graph = load_graph(
        settings.dataset, settings.root, settings.cache_dir, settings.labeled_only,
        settings.storage,
    )  # fmt: skip
    if int(ids.max()) >= graph.num_nodes:
        raise DataError(f"{emb_path}: node ids exceed {graph.name}'s {graph.num_nodes} nodes")
    result = cluster_and_report(emb, ids, graph, settings, structure, quiet=json_out)
    metrics = write_cluster_outputs(out_dir, result, ids, settings)
    if plot is not None:
        draw_projection(plot, emb, result.labels, projection, settings.seed)
        render.note(f"wrote {plot}")
    if json_out:
        render.print_json(metrics)


def cluster_and_report(
    emb: torch.Tensor, ids: torch.Tensor, graph: Graph, settings: Settings, structure: bool = True,
    quiet: bool = False,
) -> ClusteringResult:  # fmt: skip
    configure_threads()
    dev = resolve_device(settings.device)

    def report(i: int, run: ClusterRun) -> None:
        if not quiet:
            render.note(f"Run {i + 1}/{settings.runs}: {format_metrics(run.metrics)} "
                        f"[{run.seconds:.2f}s]")  # fmt: skip

    result = cluster_embeddings(
        emb, graph, node_ids=ids, n_clusters=settings.n_clusters, runs=settings.runs,
        seed=settings.seed, normalize=settings.normalize_embeddings,
        backend=settings.kmeans_backend, device=dev, structure=structure, report=report,
    )  # fmt: skip
    if not quiet:
        render.note(f"Final: {format_summary(result.summary)}")
    return result


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k.upper()}={100 * metrics[k]:.2f}" for k in SHOWN if k in metrics)


def format_summary(summary: dict[str, tuple[float, float]]) -> str:
    return ", ".join(
        f"{k.upper()}={100 * summary[k][0]:.2f}±{100 * summary[k][1]:.2f}"
        for k in SHOWN
        if k in summary
    )


def write_cluster_outputs(
    out_dir: Path, result: ClusteringResult, ids: torch.Tensor, settings: Settings
) -> dict:
    """``clusters.csv`` (node id, cluster of the best run) and ``metrics.json``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["node_id", "cluster"])
    writer.writerows(zip(ids.tolist(), result.labels.tolist(), strict=True))
    atomic_write_text(out_dir / "clusters.csv", buf.getvalue())
    metrics = {
        "n_clusters": result.n_clusters,
        "runs": [
            {"seed": r.seed, "inertia": r.inertia, "seconds": r.seconds, "backend": r.backend,
             **r.metrics}
            for r in result.runs
        ],
        "mean": {k: v[0] for k, v in result.summary.items()},
        "std": {k: v[1] for k, v in result.summary.items()},
        "normalize_embeddings": settings.normalize_embeddings,
    }  # fmt: skip
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def read_embeddings(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and node ids from ``agc infer``'s ``.pt`` or a plain ``.npy`` matrix."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".npy":
            emb = torch.from_numpy(np.load(path, allow_pickle=False)).float()
            ids = torch.arange(emb.shape[0])
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            emb, ids = state["embeddings"].float(), state["node_ids"].long()
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{path}: not an embeddings file ({type(exc).__name__})") from None
    if emb.dim() != 2 or emb.shape[0] != ids.numel():
        raise DataError(f"{path}: expected [N, D] embeddings with N node ids")
    if not torch.isfinite(emb).all():
        raise DataError(f"{path}: embeddings contain NaN or inf")
    return emb, ids


def draw_projection(
    path: Path, emb: torch.Tensor, labels: torch.Tensor, method: str, seed: int,
    sample: int = 5000,
) -> None:  # fmt: skip
    """Scatter plot of a 2-D PCA or t-SNE projection of (a sample of) the embeddings."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'agc-cli[plot]'") from None
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    n = emb.shape[0]
    idx = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    x = emb[idx].numpy()
    if method == "tsne":
        xy = TSNE(n_components=2, random_state=seed, init="pca").fit_transform(x)
    else:
        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy()[idx], cmap="tab20", s=4, alpha=0.8)
    ax.set_title(f"{method.upper()} of {len(idx):,} of {n:,} embeddings, coloured by cluster")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
