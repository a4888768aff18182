"""Whole jobs several commands run: one train → infer → cluster run (``agc run``), the same
over training seeds (``agc run --seeds``) and the benchmark grid (``agc bench``).

Each reports progress on stderr and returns a typed result from ``agc_cli/cli/results.py``;
the grid's bookkeeping (cells, results log, reference, tables) is ``agc_cli/engine/bench.py``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agc_cli.cli import common, render
from agc_cli.cli.results import BenchReport, InferReport, Peak, RunReport, SeedsReport, Stage
from agc_cli.errors import DataError, UsageError

if TYPE_CHECKING:
    from agc_cli.data.graph import Graph
    from agc_cli.engine.bench import Cell
    from agc_cli.settings import Settings

SEEDS_FILE = "seeds.json"


# ----- one run --------------------------------------------------------------------------------


def run_job(settings: Settings, graph: Graph | None = None) -> tuple[RunReport, Graph]:
    """Train (unless the method needs none) → infer → cluster into one run directory;
    ``graph``: the loaded graph to reuse (else it is loaded). Returns the report and graph."""
    from agc_cli.engine.memory import MemoryMonitor

    t0 = time.perf_counter()
    session, run_dir = common.start_session(settings, graph)
    stages = [Stage("load + setup", time.perf_counter() - t0, None, session.graph.name)]
    train = None
    if getattr(session.model, "trainable", True):
        train = common.run_training(session, run_dir)
        for text in common.train_lines(train):
            render.note(text)
        stages.append(Stage("train", train.seconds, train.peak,
                            f"loss {train.loss:.4f} after {train.epochs} epochs"))  # fmt: skip
    else:
        run_dir.release()  # nothing trains: infer and cluster write without the run's lock
        render.note(f"{session.settings.model}: no training needed (non-parametric)")
    weights = run_dir.weights_provenance(_default_weights(session, run_dir))
    if _out_of_core(session):
        infer, metrics, streamed = _embed_and_cluster_streamed(session, run_dir)
        stages += streamed
    else:
        inference = common.embed(session.model, session.graph, session.settings, None)
        infer = common.write_embeddings(
            run_dir.path, inference, session.graph, session.settings, weights=weights
        )
        render.note(common.infer_line(infer))
        stages.append(Stage("infer", infer.seconds, infer.peak, infer.mode))
        t1 = time.perf_counter()
        with MemoryMonitor() as mon:
            clustering = common.cluster_and_report(
                inference.embeddings, inference.node_ids, session.graph, session.settings
            )
        metrics, _, _ = common.write_cluster_outputs(
            run_dir.path, clustering, inference.node_ids, session.settings
        )
        stages.append(Stage("cluster", time.perf_counter() - t1, Peak.of(mon.peak),
                            common.format_summary(clustering.summary)))  # fmt: skip
    total = time.perf_counter() - t0
    stages.append(Stage("total", total, None, str(run_dir.path)))
    return RunReport(run_dir.path, stages, metrics, train, infer, total), session.graph


def _out_of_core(session: Any) -> bool:
    """``--out-of-core/--in-memory`` as given, else out of core for a store larger than the
    available memory or whose embeddings would take more than a quarter of it."""
    from agc_cli.engine.streamed_clustering import run_out_of_core_default

    wanted = session.settings.cluster_out_of_core
    if wanted is not None:
        return bool(wanted)
    return run_out_of_core_default(session.graph, session.settings.hidden_channels)


def _embed_and_cluster_streamed(
    session: Any, run_dir: Any
) -> tuple[InferReport, dict[str, Any], list[Stage]]:
    """Every node's embeddings streamed into RUN/embeddings.npy, then k-means fitted on a
    sample and one streamed assignment pass (RUN/clusters.npy, RUN/metrics.json); returns the
    inference report, the metrics and the two stages."""
    from agc_cli.engine.memory import MemoryMonitor

    render.note("out of core: embeddings stream into embeddings.npy; k-means fits on a sample "
                "and assigns every node in one streamed pass")  # fmt: skip
    infer = common.embed_to_npy(
        run_dir.path, session.model, session.graph, session.settings, "float32"
    )
    render.note(common.infer_line(infer))
    t1 = time.perf_counter()
    with MemoryMonitor() as mon:
        report = common.cluster_streamed_file(
            infer.files[0], run_dir.path, "", session.settings, graph=session.graph
        )
    summary = {k: (report.metrics["mean"][k], report.metrics["std"][k])
               for k in report.metrics["mean"]}  # fmt: skip
    return infer, report.metrics, [
        Stage("infer", infer.seconds, infer.peak, f"{infer.mode}, streamed to .npy"),
        Stage("cluster", time.perf_counter() - t1, Peak.of(mon.peak),
              f"out of core: {common.format_summary(summary)}"),
    ]  # fmt: skip


def _default_weights(session: Any, run_dir: Any) -> Path | None:
    """Load into the session's model the weights ``agc infer`` uses by default (the lowest
    training loss, ``best.pt``, as PyAGC's benchmark evaluates), returning their file."""
    from agc_cli.engine.rundir import MODEL_FILE

    if not getattr(session.model, "trainable", True):
        return None
    path = run_dir.weights_file()
    if path is not None and path.name != MODEL_FILE:
        session.model.load_state_dict(run_dir.load_checkpoint(path)["model"])
    return path


def seed_record(seed: int, report: RunReport) -> dict[str, Any]:
    """What one training seed contributes to a mean ± std: its metrics (the mean over its
    k-means runs), times, epochs and peak memory."""
    from agc_cli.engine.bench import METRICS

    peaks = [s.peak for s in report.stages if s.peak is not None]
    cuda = [p.cuda_bytes for p in peaks if p.cuda_bytes is not None]
    seconds = {s.stage: s.seconds for s in report.stages}
    return {
        "seed": seed,
        "run_dir": report.run_dir,
        "metrics": {k: report.metrics["mean"][k] for k in METRICS if k in report.metrics["mean"]},
        "train_seconds": report.train.seconds if report.train is not None else 0.0,
        "infer_seconds": seconds.get("infer", 0.0),
        "cluster_seconds": seconds.get("cluster", 0.0),
        "total_seconds": report.seconds,
        "epochs": report.train.epochs if report.train is not None else 0,
        "peak_rss_bytes": max((p.rss_bytes for p in peaks), default=0),
        "peak_cuda_bytes": max(cuda) if cuda else None,
    }


# ----- training seeds -------------------------------------------------------------------------


def seeds_folder(settings: Settings) -> Path:
    """The folder holding one run per seed: ``--run-dir`` (new or empty) or a new
    ``runs/<dataset>-<model>-<time>``; checked before any data is loaded."""
    from agc_cli.engine.rundir import RunDir

    return RunDir.reserve(settings)


def run_seeds(settings: Settings, seeds: list[int], folder: Path) -> SeedsReport:
    """One run per training seed in ``folder/seed-<s>/`` (the graph loaded once), then mean ±
    std over the seeds, also written to ``folder/seeds.json``."""
    from agc_cli.engine.bench import summarize_seeds
    from agc_cli.utils.io import atomic_write_json

    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    graph = None
    for i, seed in enumerate(seeds):
        render.note(f"training seed {seed} ({i + 1}/{len(seeds)}) into {folder / f'seed-{seed}'}")
        one = settings.model_copy(update={"seed": seed, "run_dir": folder / f"seed-{seed}"})
        report, graph = run_job(one, graph)
        records.append(seed_record(seed, report))
        render.note(f"seed {seed}: {common.format_metrics(records[-1]['metrics'])} "
                    f"[{report.seconds:.1f} s]")  # fmt: skip
    summary = summarize_seeds(records)
    result = SeedsReport(folder, records, summary["mean"], summary["std"],
                         time.perf_counter() - t0)  # fmt: skip
    atomic_write_json(folder / SEEDS_FILE, render.to_jsonable(result))
    render.note(f"wrote {folder / SEEDS_FILE}")
    return result


# ----- the benchmark grid ---------------------------------------------------------------------

# Settings that say where things are, not what ran: a rerun may change them.
_LOCATION = ("root", "cache_dir", "run_dir", "num_workers")


def run_grid(
    cells: list[Cell], flags: dict[str, Any], config: Path | None, out: Path,
    reference: dict[tuple[str, str], dict[str, float]] | None, metric: str,
    tolerance: float,
) -> BenchReport:  # fmt: skip
    """Run every cell of the grid not already in ``out/results.jsonl``; after each cell the
    CSV and markdown table are rewritten, so a killed grid leaves them consistent."""
    from agc_cli.engine import bench
    from agc_cli.settings import load_settings
    from agc_cli.utils.io import atomic_write_text

    t0 = time.perf_counter()
    log = bench.ResultsLog(out)
    done = log.finished()
    resolved = [_cell_settings(cell, flags, config, out, load_settings) for cell in cells]
    for cell, (_, print_) in zip(cells, resolved, strict=True):
        old = done.get(cell.key)
        if old is not None and old.get("fingerprint") != print_:
            raise UsageError(
                f"out: {out} holds {cell.key} run with other settings; give another --out "
                "(or the settings it ran with, see its settings.yaml)"
            )
    ran, reused, skipped = 0, 0, {}
    graph: tuple[tuple[Any, ...], Graph] | None = None

    def write_tables() -> dict[str, Path]:
        records = log.read()
        rows = bench.summarize(cells, log.finished(), skipped, reference)
        files = {"results": log.path, "csv": out / bench.CSV_FILE, "table": out / bench.TABLE_FILE}
        atomic_write_text(files["csv"], bench.cells_csv(records))
        atomic_write_text(files["table"], bench.markdown_table(rows, metric, tolerance,
                                                               reference is not None))  # fmt: skip
        return files

    for i, (cell, (settings, print_)) in enumerate(zip(cells, resolved, strict=True)):
        where = f"[{i + 1}/{len(cells)}] {cell.key}"
        if cell.key in done:
            reused += 1
            render.note(f"{where}: finished earlier, read back")
            continue
        folder = cell.folder(out)
        if folder.exists():  # a cell killed mid-run: its partial run is the grid's own
            shutil.rmtree(folder)
            render.note(f"{where}: removed the unfinished run left by an interrupted grid")
        reason = _skip_reason(settings)
        report = None
        if reason is None:
            render.note(f"{where}: running")
            key = (settings.dataset, settings.root, settings.cache_dir, settings.labeled_only,
                   settings.storage)  # fmt: skip
            try:
                report, loaded = run_job(settings, graph[1] if graph and graph[0] == key else None)
                graph = (key, loaded)
            except DataError as exc:
                reason = str(exc)
                if folder.exists():
                    shutil.rmtree(folder)
        if report is None:
            skipped[cell.key] = reason
            log.append({"model": cell.model, "dataset": cell.dataset, "seed": cell.seed,
                        "status": "skipped", "reason": reason, "fingerprint": print_})  # fmt: skip
            render.note(f"{where}: skipped ({reason})")
        else:
            record = seed_record(cell.seed, report)
            record["run_dir"] = str(Path(report.run_dir).relative_to(out))
            log.append({"model": cell.model, "dataset": cell.dataset, "status": "ok",
                        "fingerprint": print_, **record})  # fmt: skip
            ran += 1
            render.note(f"{where}: {common.format_metrics(record['metrics'])} "
                        f"[{report.seconds:.1f} s]")  # fmt: skip
        write_tables()
    files = write_tables()
    rows = bench.summarize(cells, log.finished(), skipped, reference)
    table = bench.markdown_table(rows, metric, tolerance, reference is not None)
    return BenchReport(out, rows, len(cells), ran, reused, skipped, files, metric,
                       tolerance if reference is not None else None,
                       time.perf_counter() - t0, table)  # fmt: skip


def _cell_settings(
    cell: Cell, flags: dict[str, Any], config: Path | None, out: Path, load: Any
) -> tuple[Settings, str]:
    """The cell's settings (its method's preset for its dataset under the user's flags) and
    their fingerprint; invalid settings fail here, before any cell runs."""
    from agc_cli.engine.bench import fingerprint

    settings = load({**flags, "model": cell.model, "dataset": cell.dataset, "seed": cell.seed,
                     "run_dir": cell.folder(out)}, config)  # fmt: skip
    values = settings.to_yaml_dict()
    return settings, fingerprint({k: v for k, v in values.items() if k not in _LOCATION})


def _skip_reason(settings: Settings) -> str | None:
    """Why a cell cannot run, found without loading its data: the planner's estimate for the
    mode it would train in exceeds the device's budget."""
    from agc_cli.data.info import describe_source
    from agc_cli.engine.planner import detect_device, fmt_bytes, recommend
    from agc_cli.engine.session import plan_without_data

    try:
        planned, _ = plan_without_data(settings)
        device = detect_device(None, settings.device)
        plan = recommend(describe_source(settings.dataset, settings.root), planned, device)
    except DataError as exc:
        return str(exc)
    mode = "mini_batch_train" if planned.mini_batch else "full_batch_train"
    if plan.fits(mode):
        return None
    need = plan.estimates[mode].total
    return (f"the planner estimates {fmt_bytes(need)} for {mode.replace('_', ' ')} > "
            f"{device.name} budget {fmt_bytes(device.budget)}")  # fmt: skip
