"""``agc run``: the whole job — train (unless the method needs none) → infer → cluster."""

from __future__ import annotations

from agc_cli.cli import common, jobs, render
from agc_cli.cli import options as o
from agc_cli.cli.results import RunReport, SeedsReport
from agc_cli.errors import UsageError


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
    sampled_norm: o.SampledNorm = None,
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
    checkpoint_interval: o.CheckpointInterval = None,
    infer_batch_size: o.InferBatchSize = None,
    infer_fan_out: o.InferFanOut = None,
    runs: o.Runs = None,
    n_init: o.NInit = None,
    cluster_out_of_core: o.OutOfCore = None,
    seeds: o.Seeds = None,
    dry_run: o.DryRun = False,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Train → infer → cluster in one go (default dataset: sbm-small), with a summary table.

    With --seeds, one model per training seed in RUN/seed-<s>/ (the graph loaded once),
    and mean ± std over the seeds of every metric and time (PyAGC's protocol).
    """
    render.configure(json_out, quiet, verbose)
    from agc_cli.settings import load_settings

    flags = o.settings_flags(locals())
    settings = load_settings(flags, config)
    chosen = None if seeds is None else o.parse_seeds(seeds)
    if chosen is not None and seed is not None:
        raise UsageError("seeds: --seed and --seeds contradict each other; give one of them")
    common.validate_static(settings)
    if dry_run:
        render.emit(common.dry_run(settings, flags, config), common.show_dry_run)
        return
    if chosen is not None:
        folder = jobs.seeds_folder(settings)
        render.emit(jobs.run_seeds(settings, chosen, folder), show_seeds)
        return
    report, _ = jobs.run_job(settings)
    render.emit(report, show)


def show(report: RunReport) -> None:
    rows = [
        [s.stage, f"{s.seconds:.2f} s",
         render.peak_line(s.peak.rss_bytes, s.peak.cuda_bytes) if s.peak else "", s.detail]
        for s in report.stages
    ]  # fmt: skip
    render.table("agc run summary", ["stage", "time", "peak memory", "result"], rows)


def show_seeds(report: SeedsReport) -> None:
    shown = [k for k in common.SHOWN if k in report.mean]
    rows = [
        [str(r["seed"]), *(f"{100 * r['metrics'][k]:.2f}" for k in shown),
         f"{r['train_seconds']:.1f} s", f"{r['total_seconds']:.1f} s", str(r["run_dir"])]
        for r in report.seeds
    ]  # fmt: skip
    rows.append([
        "mean ± std", *(f"{100 * report.mean[k]:.2f}±{100 * report.std[k]:.2f}" for k in shown),
        f"{report.mean['train_seconds']:.1f}±{report.std['train_seconds']:.1f} s",
        f"{report.mean['total_seconds']:.1f}±{report.std['total_seconds']:.1f} s",
        str(report.run_dir),
    ])  # fmt: skip
    render.table(f"agc run over {len(report.seeds)} training seeds",
                 ["seed", *(k.upper() for k in shown), "train", "total", "run"], rows)  # fmt: skip
