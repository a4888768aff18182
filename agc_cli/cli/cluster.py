"""``agc cluster``: k-means on a run's embeddings, label and structure metrics, plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import ClusterReport
from agc_cli.errors import DataError, UsageError

if TYPE_CHECKING:
    import torch

    from agc_cli.data.graph import Graph
    from agc_cli.engine.rundir import RunDir


def cluster(
    run_dir: Annotated[
        Path | None, typer.Argument(help="Run directory holding embeddings.pt.")
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            "--embeddings",
            help="Embeddings file (.pt from agc infer, or .npy); with RUN_DIR a file of the run.",
        ),
    ] = None,
    n_clusters: o.NClusters = None,
    runs: o.Runs = None,
    n_init: o.NInit = None,
    cluster_out_of_core: o.OutOfCore = None,
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
    dataset: o.Dataset = None,
    root: o.Root = None,
    cache_dir: o.CacheDir = None,
    seed: o.Seed = None,
    device: o.Device = None,
    config: o.Config = None,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Cluster embeddings with k-means and report NMI/ARI/ACC/F1, modularity, conductance.

    With RUN_DIR: the run's embeddings.pt, or the file of the run named by --embeddings (a
    subset from `agc infer --nodes`, whose clusters-<name>.csv and metrics-<name>.json keep
    the all-node outputs intact).
    """
    render.configure(json_out, quiet, verbose)
    flags = o.settings_flags(locals(), exclude=("run_dir",))
    if run_dir is None and embeddings is None:
        raise UsageError("give a RUN_DIR or --embeddings FILE (with --dataset)")
    if projection not in ("pca", "tsne"):
        raise UsageError(f"--projection: expected pca or tsne, got {projection!r}")
    from agc_cli.settings import load_settings
    from agc_cli.utils.io import make_dir

    tag = ""
    if run_dir is not None:
        from agc_cli.engine.rundir import RunDir

        run = RunDir.open(run_dir)
        settings = load_settings({**run.read_settings(), **flags})
        emb_path = run_embeddings(run, embeddings)
        stem = emb_path.stem
        tag = "" if stem == "embeddings" else "-" + stem.removeprefix("embeddings-")
        out_dir = output_dir or run.path
    else:
        settings = load_settings(flags, config)
        common.check_dataset(settings.dataset)
        emb_path = embeddings
        out_dir = output_dir or embeddings.parent
    render.settings_detail(settings)
    streamed = out_of_core(emb_path, settings.cluster_out_of_core)
    if streamed and plot is not None:
        raise UsageError("--plot: not with --out-of-core (it would sample the file); "
                         "plot a subset clustered in memory instead")  # fmt: skip
    plot = plot_path(plot) if plot is not None else None
    make_dir(out_dir, "--output-dir: cannot create the output directory")
    if streamed:
        report = common.cluster_streamed_file(emb_path, out_dir, tag, settings, structure)
        render.emit(report, show)
        return
    emb, ids, provenance = read_embeddings(emb_path)
    if run_dir is not None:
        run.check_fresh(emb_path, provenance)  # never score embeddings of older weights
    from agc_cli.data.sources import load_graph

    graph = load_graph(
        settings.dataset, settings.root, settings.cache_dir, settings.labeled_only,
        settings.storage,
    )  # fmt: skip
    check_embeddings(emb_path, ids, graph, explicit_ids=emb_path.suffix != ".npy")
    if ids.numel() < graph.num_nodes:
        render.note(f"clustering {ids.numel():,} of {graph.num_nodes:,} nodes (the ids in "
                    f"{emb_path}); metrics are over these nodes")  # fmt: skip
    result = common.cluster_and_report(emb, ids, graph, settings, structure)
    metrics, clusters_file, metrics_file = common.write_cluster_outputs(
        out_dir, result, ids, settings, tag
    )
    if plot is not None:
        scores = ", ".join(f"{k.upper()} {v:.2f}" for k, v in list(metrics["mean"].items())[:4])
        truth = graph.y[ids] if graph.y is not None else None
        title = f"{graph.name} · {settings.model} · {scores}"
        draw_projection(plot, emb, result.labels, projection, settings.seed, title, truth)
        render.note(f"wrote {plot}")
    report = ClusterReport(
        metrics, int(ids.numel()), int(graph.num_nodes), emb_path, clusters_file, metrics_file,
        plot,
    )  # fmt: skip
    render.emit(report, show)


def show(report: ClusterReport) -> None:
    summary = {k: (report.metrics["mean"][k], report.metrics["std"][k])
               for k in report.metrics["mean"]}  # fmt: skip
    render.line(f"Final: {common.format_summary(summary)}")
    render.line(f"Clusters: {report.clusters_file}; metrics: {report.metrics_file}")


def out_of_core(path: Path, wanted: bool | None) -> bool:
    """Whether to cluster ``path`` out of core: as the user said (``--out-of-core`` needs an
    .npy), else for an .npy larger than a quarter of the available memory."""
    if wanted is None:
        from agc_cli.engine.streamed_clustering import out_of_core_default

        return out_of_core_default(path)
    if wanted and path.suffix != ".npy":
        raise UsageError(
            f"--out-of-core: reads an .npy matrix, {path.name} is not one (write one with "
            "`agc infer --format npy`, then pass --embeddings embeddings.npy)"
        )
    return wanted


def run_embeddings(run: RunDir, name: Path | None) -> Path:
    """The run's embeddings file: ``embeddings.pt``, or ``name`` (a file of the run)."""
    if name is None:
        path = run.path / common.EMBEDDINGS_FILE
        if path.is_file():
            return path
        subsets = sorted(p.name for p in run.path.glob("embeddings-*.pt"))
        hint = f" (it holds {', '.join(subsets)}: pass --embeddings NAME)" if subsets else ""
        raise DataError(f"{path} not found; run `agc infer {run.path}` first{hint}")
    path = run.path / name if len(name.parts) == 1 else name
    if path.resolve().parent != run.path.resolve():
        raise UsageError(
            f"--embeddings: {name} is not a file of {run.path}; give a file name in the run, "
            "or drop RUN_DIR to cluster any embeddings file (with --dataset)"
        )
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path


def plot_path(path: Path) -> Path:
    """The image file ``--plot`` writes: ``.png`` added when the name has no suffix; the
    folder is created now, so a place that cannot hold it fails before any clustering."""
    from agc_cli.utils.io import make_dir

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'agc-cli[plot]'") from None
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    fig = plt.figure()
    formats = fig.canvas.get_supported_filetypes()
    plt.close(fig)
    if path.suffix.lstrip(".").lower() not in formats:
        raise UsageError(
            f"--plot: {path.suffix!r} is not an image format matplotlib writes "
            f"(use {', '.join('.' + f for f in sorted(formats))})"
        )
    if path.is_dir():
        raise UsageError(f"--plot: {path} is a directory; give an image file name")
    make_dir(path.parent, "--plot: cannot create the plot's directory")
    return path


def check_embeddings(path: Path, ids: torch.Tensor, graph: Graph, explicit_ids: bool) -> None:
    """Refuse embeddings that do not match ``graph``: a plain matrix needs one row per node;
    recorded node ids must be distinct and in range."""
    if not explicit_ids and ids.numel() != graph.num_nodes:
        raise DataError(
            f"{path}: {ids.numel():,} rows for {graph.name}'s {graph.num_nodes:,} nodes; a .npy "
            "matrix needs one row per node (embed a subset with `agc infer --nodes`, which "
            "records the node ids)"
        )
    if int(ids.min()) < 0 or int(ids.max()) >= graph.num_nodes:
        raise DataError(f"{path}: node ids must be in [0, {graph.num_nodes}) for {graph.name}")
    import torch

    if torch.unique(ids).numel() != ids.numel():
        raise DataError(f"{path}: node ids repeat; each node may appear once")


def read_embeddings(path: Path) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
    """Embeddings, node ids and the weights' provenance (None when not recorded) from
    ``agc infer``'s ``.pt`` or a plain ``.npy`` matrix."""
    import numpy as np
    import torch

    from agc_cli.utils.io import reading

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with reading(path, "not an embeddings file"):
        if path.suffix == ".npy":
            emb = torch.from_numpy(np.load(path, allow_pickle=False)).float()
            ids = torch.arange(emb.shape[0])
            provenance = None
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            emb, ids = state["embeddings"].float(), state["node_ids"].long().view(-1)
            provenance = state.get("weights")
    if emb.dim() != 2 or emb.shape[0] != ids.numel() or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise DataError(f"{path}: expected [N, D] embeddings (N, D >= 1) with N node ids")
    if not torch.isfinite(emb).all():
        raise DataError(f"{path}: embeddings contain NaN or inf")
    return emb, ids, provenance


def match_to_classes(predicted, true):
    """``predicted`` cluster ids renumbered to the ground-truth class each is matched with (a
    maximum-overlap one-to-one matching over labelled points); unmatched clusters get ids after
    the largest class. Unlabelled points (``true < 0``) do not count."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    clusters, inverse = np.unique(predicted, return_inverse=True)
    labelled = true >= 0
    classes = int(true[labelled].max()) + 1 if labelled.any() else 0
    overlap = np.zeros((len(clusters), max(classes, 1)), dtype=np.int64)
    np.add.at(overlap, (inverse[labelled], true[labelled]), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.full(len(clusters), -1)
    mapping[rows] = cols
    spare = iter(range(max(classes, 1), max(classes, 1) + len(clusters)))
    mapping = np.array([m if m >= 0 else next(spare) for m in mapping])
    return mapping[inverse]


def draw_projection(
    path: Path, emb: torch.Tensor, labels: torch.Tensor, method: str, seed: int,
    title: str = "", truth: torch.Tensor | None = None, sample: int = 5000,
) -> None:  # fmt: skip
    """A 2-D PCA or t-SNE projection of (a sample of) the embeddings, coloured by predicted
    cluster, beside the same points coloured by ground-truth class when labels exist.

    The projection is robust to outliers: each axis is clipped to its 0.5–99.5 percentiles
    (clipped points stay on the border), so a few far points cannot squash the cloud.
    """
    import matplotlib.pyplot as plt  # checked by plot_path
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from agc_cli.utils.io import writing

    rng = np.random.default_rng(seed)
    n = emb.shape[0]
    idx = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    x = emb[idx].numpy()
    if method == "tsne":
        xy = TSNE(n_components=2, random_state=seed, init="pca").fit_transform(x)
    else:
        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    low, high = np.percentile(xy, [0.5, 99.5], axis=0)
    xy = np.clip(xy, low, high)
    predicted = labels.numpy()[idx]
    panels = [("predicted cluster", predicted)]
    if truth is not None and bool((truth[idx] >= 0).any()):
        true = truth.numpy()[idx]
        # Clusters renumbered after the class each overlaps most (Hungarian matching), so the
        # two panels share colours where they agree.
        panels = [("predicted cluster (numbered after its matched class)",
                   match_to_classes(predicted, true)),
                  ("ground-truth class", true)]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6), dpi=120,
                             squeeze=False)  # fmt: skip
    for ax, (name, colour) in zip(axes[0], panels, strict=True):
        values = np.unique(colour)
        cmap = plt.get_cmap("tab20", max(len(values), 1))
        for k, value in enumerate(values):
            keep = colour == value
            ax.scatter(xy[keep, 0], xy[keep, 1], s=4, alpha=0.8, color=cmap(k), label=str(value))
        ax.set_title(f"coloured by {name}")
        ax.set_xlabel(f"{method.upper()} 1")
        ax.set_ylabel(f"{method.upper()} 2")
        if len(values) <= 20:
            ax.legend(title=name.split()[1], markerscale=3, fontsize="small", loc="best")
    head = f"{method.upper()} of {len(idx):,} of {n:,} embeddings"
    fig.suptitle(f"{title}\n{head}" if title else head)
    fig.tight_layout()
    try:
        with writing(path):
            fig.savefig(path)
    finally:
        plt.close(fig)
