"""``agc run``: the whole job — train (unless the method needs none) → infer → cluster."""

from __future__ import annotations

import time

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import Peak, RunReport, Stage


def run(
    config: o.Config = None,
    dataset: o.Dataset = None,
    root: o.Root = None,
    cache_dir: o.CacheDir = None,
    labeled_only: o.LabeledOnly = None,
    model: o.Model = None,
    gnn_type: o.GnnType = None,
    hidden_channels: o.HiddenChannels = None,
    num_layers: o.NumLayers = None,
    heads: o.Heads = None,
    dropout: o.Dropout = None,
    n_clusters: o.NClusters = None,
    mini_batch: o.MiniBatch = None,
    batch_size: o.BatchSize = None,
    fan_out: o.FanOut = None,
    fan_out_final: o.FanOutFinal = None,
    epochs: o.Epochs = None,
    lr: o.Lr = None,
    device: o.Device = None,
    precision: o.Precision = None,
    accumulate: o.Accumulate = None,
    num_workers: o.NumWorkers = None,
    seed: o.Seed = None,
    patience: o.Patience = None,
    run_dir: o.RunDir = None,
    save_every: o.SaveEvery = None,
    infer_batch_size: o.InferBatchSize = None,
    infer_fan_out: o.InferFanOut = None,
    runs: o.Runs = None,
    dry_run: o.DryRun = False,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Train → infer → cluster in one go (default dataset: sbm-small), with a summary table."""
    render.configure(json_out, quiet, verbose)
    from agc_cli.engine.rundir import MODEL_FILE
    from agc_cli.settings import load_settings

    flags = o.settings_flags(locals())
    settings = load_settings(flags, config)
    common.validate_static(settings)
    if dry_run:
        render.emit(common.dry_run(settings, flags, config), common.show_dry_run)
        return
    t0 = time.perf_counter()
    session, run_dir = common.start_session(settings)
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
    inference = common.embed(session.model, session.graph, session.settings, None)
    # The in-memory model is the final one, model.pt (agc infer would pick best.pt if present).
    final = run_dir.path / MODEL_FILE if train is not None else None
    weights = run_dir.weights_provenance(final, explicit=final is not None)
    infer = common.write_embeddings(
        run_dir.path, inference, session.graph, session.settings, weights=weights
    )
    render.note(common.infer_line(infer))
    stages.append(Stage("infer", infer.seconds, infer.peak, infer.mode))
    from agc_cli.engine.memory import MemoryMonitor

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
    render.emit(RunReport(run_dir.path, stages, metrics, train, infer, total), show)


def show(report: RunReport) -> None:
    rows = [
        [s.stage, f"{s.seconds:.2f} s",
         render.peak_line(s.peak.rss_bytes, s.peak.cuda_bytes) if s.peak else "", s.detail]
        for s in report.stages
    ]  # fmt: skip
    render.table("agc run summary", ["stage", "time", "peak memory", "result"], rows)
