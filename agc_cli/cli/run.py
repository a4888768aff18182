"""``agc run``: the whole job — train (unless the method needs none) → infer → cluster."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.cluster import cluster_and_report, format_summary, write_cluster_outputs
from agc_cli.cli.infer import embed, write_embeddings
from agc_cli.cli.train import peak_line, run_training, start_session
from agc_cli.engine.memory import MemoryMonitor
from agc_cli.engine.planner import fmt_bytes
from agc_cli.settings import load_settings


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
    runs: Annotated[int | None, typer.Option("--runs", help="Independent k-means runs.")] = None,
    json_out: o.Json = False,
) -> None:
    """Train → infer → cluster in one go (default dataset: sbm-small), with a summary table."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "json_out")}
    settings = load_settings(o.settings_flags(flags), config)
    stages: list[list[str]] = []
    t0 = time.perf_counter()
    session, run_dir = start_session(settings)
    stages.append(["load + setup", f"{time.perf_counter() - t0:.2f} s", "-", session.graph.name])
    if getattr(session.model, "trainable", True):
        result = run_training(session, run_dir)
        stages.append([
            "train", f"{result.seconds:.2f} s", peak_line(result.peak),
            f"loss {result.loss:.4f} after {result.epochs} epochs",
        ])  # fmt: skip
    else:
        run_dir.release()  # nothing trains: infer and cluster write without the run's lock
        render.note(f"{session.settings.model}: no training needed (non-parametric)")
    inference = embed(session.model, session.graph, session.settings, None)
    write_embeddings(run_dir.path, inference, session.graph, session.settings)
    stages.append([
        "infer", f"{inference.seconds:.2f} s", peak_line(inference.peak), inference.mode,
    ])  # fmt: skip
    t1 = time.perf_counter()
    with MemoryMonitor() as mon:
        clustering = cluster_and_report(
            inference.embeddings, inference.node_ids, session.graph, session.settings,
            quiet=json_out,
        )  # fmt: skip
    metrics = write_cluster_outputs(run_dir.path, clustering, inference.node_ids, session.settings)
    stages.append([
        "cluster", f"{time.perf_counter() - t1:.2f} s", f"CPU RSS {fmt_bytes(mon.peak.rss_bytes)}",
        format_summary(clustering.summary),
    ])  # fmt: skip
    stages.append(["total", f"{time.perf_counter() - t0:.2f} s", "", str(run_dir.path)])
    if json_out:
        render.print_json({"run_dir": str(run_dir.path), "metrics": metrics, "stages": stages})
        return
    render.table("agc run summary", ["stage", "time", "peak memory", "result"], stages)
