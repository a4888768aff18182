"""Steps several commands share (train → infer → cluster), so no command imports another.

Each step is one engine call plus its reporting; it returns the engine's typed result or a
report from ``agc_cli/cli/results.py``. Heavy modules (torch, the engine, the models) are
imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.results import ClusterReport, DryRunReport, InferReport, Peak, TrainReport
from agc_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from agc_cli.data.graph import Graph
    from agc_cli.engine.clustering import ClusteringResult
    from agc_cli.engine.inference import InferenceResult
    from agc_cli.engine.rundir import RunDir
    from agc_cli.engine.session import Session
    from agc_cli.engine.trainer import TrainResult
    from agc_cli.models.base import ClusteringModel
    from agc_cli.settings import Settings

EMBEDDINGS_FILE = "embeddings.pt"
SHOWN = ("nmi", "ari", "acc", "f1", "modularity", "conductance")


# ----- validate before work -------------------------------------------------------------------


def validate_static(settings: Settings, *, training: bool = True, processes: int = 1) -> None:
    """Everything that can be checked without data, before any dataset is loaded or generated:
    the method, the dataset name or spec, option combinations and the run directory.

    Raises:
        UsageError: naming the setting to change.
    """
    check_model(settings.model)
    check_dataset(settings.dataset)
    if settings.precision == "16" and settings.device == "cpu":
        raise UsageError("precision: 16 (fp16) needs a CUDA device; use bf16 on CPU")
    if processes < 1:
        raise UsageError(f"nproc_per_node: expected >= 1, got {processes}")
    if training and processes > 1 and settings.mini_batch is False:
        raise UsageError(
            "mini_batch: data-parallel training shards each epoch's seed nodes; "
            "full-batch training runs in one process (drop --full-batch)"
        )
    if training and settings.run_dir is not None:
        from agc_cli.engine.rundir import RunDir

        RunDir(Path(settings.run_dir)).check_startable()  # a folder holding a run is refused


def dry_run(settings: Settings, flags: dict[str, Any], config: Path | None) -> DryRunReport:
    """What ``agc train``/``agc run`` would use, without loading the data or writing anything."""
    from agc_cli.engine.session import plan_without_data
    from agc_cli.settings import value_sources

    sources = value_sources(flags, config)
    planned, applied = plan_without_data(settings)
    for choice in applied:
        sources[choice.setting] = "planner"
    values = planned.to_yaml_dict()
    return DryRunReport(
        settings=values, sources={k: sources[k] for k in values},
        planner=[{"setting": c.setting, "value": c.value, "reason": c.reason} for c in applied],
    )  # fmt: skip


def show_dry_run(report: DryRunReport) -> None:
    rows = [[key, value, report.sources[key]] for key, value in report.settings.items()]
    render.table("Resolved settings (dry run)", ["setting", "value", "source"], rows)
    for choice in report.planner:
        render.note(f"planner: {choice['setting']} {choice['value']} ({choice['reason']})")


def verify_dataset(dataset: str) -> None:
    """``--verify``: check every byte of the on-disk store ``dataset`` against its full
    checksums (a progress bar on a terminal, a note with the outcome)."""
    import time

    from agc_cli.data.layout import is_store

    if not is_store(dataset):
        raise UsageError(
            f"--verify: {dataset} is not an on-disk store (write one with agc convert)"
        )
    from agc_cli.cli.progress import byte_progress
    from agc_cli.data.store import verify_store

    t0 = time.perf_counter()
    with byte_progress(f"verifying {dataset}", _store_bytes(dataset)) as advance:
        checked = verify_store(dataset, advance)
    total = sum(checked.values())
    render.note(f"verified {len(checked)} files of {dataset} ({total / 2**20:,.1f} MiB) in "
                f"{time.perf_counter() - t0:.1f} s: every byte matches")  # fmt: skip


def _store_bytes(dataset: str) -> int:
    from agc_cli.data.store import data_bytes, read_meta

    return data_bytes(read_meta(dataset))


def check_model(name: str) -> None:
    """An unknown method is refused by name (the same message as the registry's)."""
    if name.lower() not in o.MODEL_NAMES:
        raise UsageError(
            f"model: unknown {name!r}; choose one of {', '.join(sorted(o.MODEL_NAMES))} "
            "(see agc models)"
        )


def check_dataset(name: str) -> None:
    """A catalog name, a store, a well-formed synthetic preset/spec or an existing graph file."""
    from agc_cli.data import catalog
    from agc_cli.data.info import unknown_dataset
    from agc_cli.data.layout import is_store

    if is_store(name) or catalog.lookup(name) is not None:
        return
    from agc_cli.data import synthetic

    if synthetic.parse_synthetic(name) is not None:  # a malformed spec raises here
        return
    from agc_cli.data.files import is_user_graph

    if not is_user_graph(Path(name).expanduser()):
        raise unknown_dataset(name)


# ----- train ----------------------------------------------------------------------------------


def start_session(settings: Settings, graph: Graph | None = None) -> tuple[Session, RunDir | None]:
    """Load data (unless ``graph`` is given) and build the model (reporting what was decided),
    then create the run dir.

    In a data-parallel run, rank 0 alone creates the run directory and talks; the other ranks
    get ``None`` (and fail with rank 0's error if it could not create one).
    """
    from agc_cli.engine import distributed
    from agc_cli.engine.rundir import RunDir
    from agc_cli.engine.session import open_session

    if graph is None:
        render.note(f"loading {settings.dataset} ...")
    session = open_session(settings, graph)
    for applied in session.planned:
        value = "mini-batch" if applied.value is True else applied.value
        value = "full-batch" if applied.value is False else value
        render.note(f"planner: {applied.setting} {value} ({applied.reason})")
    run, error = None, None
    if session.dist.is_main:
        try:
            run = RunDir.create(session.settings)
        except UsageError as exc:
            error = str(exc)
    error = distributed.broadcast_object(error, session.dist)
    if error is not None:
        raise UsageError(error)
    if run is not None:
        render.header("agc train", [*session.summary().items(), ("run dir", run.path)])
        render.settings_detail(session.settings)
    return session, run


def run_training(session: Session, run: RunDir | None) -> TrainReport:
    """Train into ``run``; a failure before the first checkpoint leaves no run folder behind,
    and the run's lock is released at the end."""
    from agc_cli.cli.progress import make_progress
    from agc_cli.engine.session import train as train_session

    progress = make_progress() if session.dist.is_main else None
    try:
        with run.discard_on_failure() if run is not None else contextlib.nullcontext():
            _, result = train_session(session, run, progress)
        if run is not None:
            write_loss_plot(run)
    finally:
        if progress is not None:
            progress.close()
        if run is not None:
            run.release()
    return train_report(result, session, run)


LOSS_PLOT = "loss.png"


def write_loss_plot(run: RunDir) -> Path | None:
    """``RUN/loss.png``: the training loss and its components per epoch, from
    ``metrics.jsonl``, when matplotlib is installed (else nothing, silently)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from agc_cli.utils.io import writing

    records = run.read_metrics()
    if not records:
        return None
    skip = {"epoch", "seconds", "nodes_per_s", "step", "batch"}
    epochs = [r["epoch"] for r in records]
    keys = [k for k in records[-1] if k not in skip and isinstance(records[-1][k], int | float)]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for key in keys:
        ax.plot(epochs, [r.get(key, float("nan")) for r in records], label=key,
                linewidth=2 if key == "loss" else 1)  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{run.path.name}: training loss per epoch")
    ax.legend()
    fig.tight_layout()
    path = run.path / LOSS_PLOT
    try:
        with writing(path):
            fig.savefig(path)
    finally:
        plt.close(fig)
    render.note(f"wrote {path}")
    return path


def train_report(
    result: TrainResult, session: Session, run: RunDir | None, resumed_from: str | None = None
) -> TrainReport:
    return TrainReport(
        run_dir=None if run is None else run.path, dataset=session.graph.name,
        model=session.settings.model, mode=session.mode, epochs=result.epochs,
        seconds=float(result.seconds), ms_per_epoch=float(result.ms_per_epoch),
        loss=float(result.loss), best_loss=float(result.best_loss),
        stopped_early=bool(result.stopped_early), peak=Peak.of(result.peak),
        resumed_from=resumed_from, history=list(result.history),
    )  # fmt: skip


def train_lines(report: TrainReport) -> list[str]:
    """The plain-text result of training."""
    stop = " (early stop)" if report.stopped_early else ""
    lines = [
        f"Training completed in {report.seconds:.2f} s (avg {report.ms_per_epoch:.1f} ms/epoch)"
        f"{stop}; final loss {report.loss:.4f}",
        f"Peak memory: {render.peak_line(report.peak.rss_bytes, report.peak.cuda_bytes)}",
    ]
    if report.run_dir is not None:
        lines.append(f"Run directory: {report.run_dir}")
    return lines


# ----- infer ----------------------------------------------------------------------------------


def embed(
    model: ClusteringModel, graph: Graph, settings: Settings, ids: torch.Tensor | None
) -> InferenceResult:
    """Run the fallback chain, reporting each step on stderr."""
    from agc_cli.engine.inference import infer as run_inference
    from agc_cli.engine.runtime import configure_threads, resolve_device

    configure_threads()
    dev = resolve_device(settings.device)
    return run_inference(
        model, graph, dev,
        full_batch=settings.force_full_batch_inference or settings.mini_batch is False,
        allow_cpu_fallback=settings.allow_cpu_fallback,
        batch_size=settings.infer_batch_size,
        fan_out=settings.infer_fan_out,
        nodes=ids,
        seed=settings.seed,
        report=render.note,
    )  # fmt: skip


def embeddings_file(subset: str | None) -> str:
    """``embeddings.pt`` for every node, ``embeddings-<subset>.pt`` for a subset."""
    return EMBEDDINGS_FILE if subset is None else f"embeddings-{subset}.pt"


def write_embeddings(
    directory: Path, result: InferenceResult, graph: Graph, settings: Settings, fmt: str = "pt",
    subset: str | None = None, weights: dict[str, Any] | None = None,
) -> InferReport:  # fmt: skip
    """Write ``embeddings.pt`` (``embeddings-<subset>.pt`` for a subset of the nodes), with the
    provenance of the weights they came from (:meth:`RunDir.weights_provenance`)."""
    import numpy as np

    from agc_cli.utils.io import atomic_torch_save, atomic_write

    path = directory / embeddings_file(subset)
    atomic_torch_save(
        {
            "embeddings": result.embeddings,
            "node_ids": result.node_ids,
            "dataset": graph.name,
            "model": settings.model,
            "mode": result.mode,
            "weights": weights,
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
    return InferReport(
        run_dir=directory, files=written, mode=result.mode, nodes=int(result.node_ids.numel()),
        total_nodes=int(graph.num_nodes), dim=int(result.embeddings.shape[1]),
        seconds=float(result.seconds), batch_size=result.batch_size,
        peak=Peak.of(result.peak), events=list(result.events),
    )  # fmt: skip


def embed_to_npy(
    directory: Path, model: ClusteringModel, graph: Graph, settings: Settings, dtype: str
) -> InferReport:
    """Every node's embeddings into ``directory/embeddings.npy`` as the fallback chain
    produces them (layer-wise: batch by batch, never all in memory)."""
    from agc_cli.engine.inference import EmbeddingsFile
    from agc_cli.engine.inference import infer as run_inference
    from agc_cli.engine.runtime import configure_threads, resolve_device

    configure_threads()
    path = directory / "embeddings.npy"
    sink = EmbeddingsFile(path, graph.num_nodes, dtype)
    try:
        result = run_inference(
            model, graph, resolve_device(settings.device),
            full_batch=settings.force_full_batch_inference or settings.mini_batch is False,
            allow_cpu_fallback=settings.allow_cpu_fallback,
            batch_size=settings.infer_batch_size, fan_out=settings.infer_fan_out,
            seed=settings.seed, report=render.note, sink=sink,
        )  # fmt: skip
        sink.commit()
    finally:
        sink.reset()  # a failure leaves no partial file; after commit, nothing to do
    render.note(f"wrote {path} ({graph.num_nodes:,} nodes × {sink.dim}, {dtype})")
    return InferReport(
        run_dir=directory, files=[path], mode=result.mode, nodes=graph.num_nodes,
        total_nodes=graph.num_nodes, dim=int(sink.dim), seconds=float(result.seconds),
        batch_size=result.batch_size, peak=Peak.of(result.peak), events=list(result.events),
    )  # fmt: skip


def infer_line(report: InferReport) -> str:
    return (
        f"Inference: {report.mode}, {report.nodes:,} × {report.dim} in {report.seconds:.2f} s; "
        f"peak {render.peak_line(report.peak.rss_bytes, report.peak.cuda_bytes)}"
    )


# ----- cluster --------------------------------------------------------------------------------


def cluster_and_report(
    emb: torch.Tensor, ids: torch.Tensor, graph: Graph, settings: Settings, structure: bool = True
) -> ClusteringResult:
    """k-means runs with their metrics; each run is reported on stderr as it ends."""
    from agc_cli.engine.clustering import ClusterRun, cluster_embeddings
    from agc_cli.engine.runtime import configure_threads, resolve_device

    configure_threads()
    dev = resolve_device(settings.device)

    def report(i: int, run: ClusterRun) -> None:
        render.note(f"Run {i + 1}/{settings.runs}: {format_metrics(run.metrics)} "
                    f"[{run.seconds:.2f}s]")  # fmt: skip

    return cluster_embeddings(
        emb, graph, node_ids=ids, n_clusters=settings.n_clusters, runs=settings.runs,
        seed=settings.seed, normalize=settings.normalize_embeddings, n_init=settings.n_init,
        backend=settings.kmeans_backend, device=dev, structure=structure, report=report,
    )  # fmt: skip


def cluster_streamed_file(
    emb_path: Path,
    out_dir: Path,
    tag: str,
    settings: Settings,
    structure: bool = True,
    graph: Graph | None = None,
) -> ClusterReport:
    """k-means on a sample, one streamed assignment pass and streamed metrics per run; writes
    ``clusters<tag>.npy`` (int32, the cluster of node ``i`` at ``i``) and ``metrics<tag>.json``;
    ``graph``: the loaded graph to score against (else it is loaded)."""
    from agc_cli.cli.progress import byte_progress
    from agc_cli.data.sources import load_graph
    from agc_cli.engine.clustering import ClusterRun
    from agc_cli.engine.runtime import configure_threads, resolve_device
    from agc_cli.engine.streamed_clustering import cluster_streamed, open_embeddings
    from agc_cli.utils.io import atomic_write_json

    if graph is None:
        graph = load_graph(
            settings.dataset, settings.root, settings.cache_dir, settings.labeled_only,
            settings.storage,
        )  # fmt: skip
    emb = open_embeddings(emb_path, graph.num_nodes)
    render.note(f"clustering {graph.num_nodes:,} × {emb.shape[1]} embeddings out of core "
                f"({emb_path})")  # fmt: skip
    configure_threads()

    def report(i: int, run: ClusterRun) -> None:
        render.note(f"Run {i + 1}/{settings.runs}: {format_metrics(run.metrics)} "
                    f"[{run.seconds:.2f}s]")  # fmt: skip

    clusters_file = out_dir / f"clusters{tag}.npy"
    result = cluster_streamed(
        emb, graph, clusters_file, n_clusters=settings.n_clusters, runs=settings.runs,
        seed=settings.seed, normalize=settings.normalize_embeddings, n_init=settings.n_init,
        backend=settings.kmeans_backend, device=resolve_device(settings.device),
        structure=structure, report=report, stage=byte_progress,
    )  # fmt: skip
    metrics = {**metrics_record(result, settings),
               "out_of_core": {"sample_rows": result.sample_rows}}  # fmt: skip
    metrics_file = out_dir / f"metrics{tag}.json"
    atomic_write_json(metrics_file, metrics)
    return ClusterReport(metrics, graph.num_nodes, graph.num_nodes, emb_path, clusters_file,
                         metrics_file)  # fmt: skip


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k.upper()}={100 * metrics[k]:.2f}" for k in SHOWN if k in metrics)


def format_summary(summary: dict[str, Any]) -> str:
    """``NMI=51.20±1.30, ...`` from the ``(mean, std)`` pairs of a clustering summary."""
    return ", ".join(
        f"{k.upper()}={100 * summary[k][0]:.2f}±{100 * summary[k][1]:.2f}"
        for k in SHOWN
        if k in summary
    )


def metrics_record(result: Any, settings: Settings) -> dict[str, Any]:
    """What ``metrics.json`` holds for a clustering result (in memory or streamed): every
    run with its seed, inertia, time, backend and metrics, and their mean and std."""
    return {
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


def write_cluster_outputs(
    out_dir: Path, result: ClusteringResult, ids: torch.Tensor, settings: Settings, tag: str = ""
) -> tuple[dict[str, Any], Path, Path]:
    """``clusters<tag>.csv`` (node id, cluster of the best run) and ``metrics<tag>.json``;
    returns the metrics and both paths."""
    import csv
    import io

    from agc_cli.utils.io import atomic_write_json, atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["node_id", "cluster"])
    writer.writerows(zip(ids.tolist(), result.labels.tolist(), strict=True))
    clusters = out_dir / f"clusters{tag}.csv"
    atomic_write_text(clusters, buf.getvalue())
    metrics = metrics_record(result, settings)
    metrics_file = out_dir / f"metrics{tag}.json"
    atomic_write_json(metrics_file, metrics)
    return metrics, clusters, metrics_file
