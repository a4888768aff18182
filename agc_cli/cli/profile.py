"""``agc profile``: a few training (or inference) steps under ``torch.profiler``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import ProfileReport, ProfileStage
from agc_cli.errors import UsageError

SORT_KEYS = ("cpu_time_total", "self_cpu_time_total", "device_time_total",
             "self_device_time_total", "cpu_memory_usage", "count")  # fmt: skip


def profile(
    stage_name: Annotated[
        str, typer.Option("--stage", help="What to profile: train or infer.")
    ] = "train",
    wait: Annotated[int, typer.Option("--wait", help="Steps skipped first.")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="Steps traced but discarded.")] = 1,
    active: Annotated[int, typer.Option("--active", help="Steps recorded.")] = 3,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Recorded steps (sets --active; wait/warmup 1 each)."),
    ] = None,
    sort: Annotated[
        str | None, typer.Option("--sort", help="Table sort key (default: device or CPU time).")
    ] = None,
    row_limit: Annotated[int, typer.Option("--row-limit", help="Table rows.")] = 20,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Chrome trace path (default RUN/trace.json)."),
    ] = None,
    config: o.Config = None,
    dataset: o.Dataset = None,
    root: o.Root = None,
    cache_dir: o.CacheDir = None,
    model: o.Model = None,
    gnn_type: o.GnnType = None,
    hidden_channels: o.HiddenChannels = None,
    num_layers: o.NumLayers = None,
    heads: o.Heads = None,
    mini_batch: o.MiniBatch = None,
    batch_size: o.BatchSize = None,
    fan_out: o.FanOut = None,
    lr: o.Lr = None,
    device: o.Device = None,
    precision: o.Precision = None,
    num_workers: o.NumWorkers = None,
    seed: o.Seed = None,
    run_dir: o.RunDir = None,
    infer_batch_size: o.InferBatchSize = None,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Profile training (or inference) steps: key_averages table, stage shares, chrome trace.

    Open trace.json in chrome://tracing or https://ui.perfetto.dev.
    """
    if stage_name not in ("train", "infer"):
        raise UsageError(f"--stage: expected train or infer, got {stage_name!r}")
    if steps is not None:
        wait, warmup, active = 1, 1, steps
    if min(wait, warmup) < 0 or active < 1:
        raise UsageError("--wait/--warmup must be >= 0 and --active/--steps >= 1")
    if sort is not None and sort not in SORT_KEYS:
        raise UsageError(f"--sort: expected one of {', '.join(SORT_KEYS)}")
    render.configure(json_out, quiet, verbose)
    from agc_cli.settings import load_settings

    settings = load_settings(o.settings_flags(locals()), config)
    common.validate_static(settings, training=stage_name == "train")
    render.settings_detail(settings)
    from agc_cli.engine.inference import infer as run_inference
    from agc_cli.engine.profiling import (
        ProfileConfig,
        StepProfiler,
        cuda_memory_history,
        stage_summary,
    )
    from agc_cli.engine.rundir import RunDir
    from agc_cli.engine.session import open_session
    from agc_cli.engine.trainer import Trainer

    cfg = ProfileConfig(wait=wait, warmup=warmup, active=active)
    render.note(f"loading {settings.dataset} ...")
    session = open_session(settings)
    run = RunDir.create(session.settings)
    trace = output or run.path / "trace.json"
    dev = session.device
    total = cfg.steps
    # Enough epochs to reach the step budget whatever the batches per epoch.
    long_settings = session.settings.model_copy(update={"epochs": max(total, 1), "save_every": 0})
    snapshot = run.path / "memory_snapshot.pickle"
    with cuda_memory_history(dev, snapshot):
        if stage_name == "train":
            prof = StepProfiler(cfg, dev)
            trainer = Trainer(session.graph, session.model, long_settings, dev, None,
                              profiler=prof, max_steps=total)  # fmt: skip
            trainer.fit()
        else:
            prof = StepProfiler(ProfileConfig(wait=0, warmup=0, active=1), dev)
            with prof:
                run_inference(
                    session.model, session.graph, dev,
                    full_batch=bool(settings.force_full_batch_inference),
                    allow_cpu_fallback=settings.allow_cpu_fallback,
                    batch_size=session.settings.infer_batch_size,
                    fan_out=session.settings.infer_fan_out,
                )  # fmt: skip
                prof.step()
    torch_prof = prof.profile
    trace.parent.mkdir(parents=True, exist_ok=True)
    torch_prof.export_chrome_trace(str(trace))
    render.note(f"wrote {trace} (open in chrome://tracing or ui.perfetto.dev)")
    if dev.type == "cuda":
        render.note(f"wrote {snapshot} (pytorch.org/memory_viz)")
    key = sort or ("device_time_total" if dev.type == "cuda" else "cpu_time_total")
    averages = torch_prof.key_averages()
    shares = stage_summary(torch_prof, dev)
    total_ms = sum(shares.values()) or 1.0
    operators = sorted(averages, key=lambda e: getattr(e, key, 0) or 0, reverse=True)[:row_limit]
    report = ProfileReport(
        run_dir=run.path, stage=stage_name, device=str(dev),
        clock="device" if dev.type == "cuda" else "CPU", active_steps=cfg.active,
        stages=[ProfileStage(name, ms, ms / total_ms) for name, ms in shares.items()],
        operators=[_operator(e) for e in operators], trace=trace,
        memory_snapshot=snapshot if dev.type == "cuda" else None,
        table=averages.table(sort_by=key, row_limit=row_limit) if not json_out else "",
    )  # fmt: skip
    render.emit(report, show)


def _operator(event: Any) -> dict[str, Any]:
    """One row of ``key_averages`` with its times in microseconds."""
    return {
        "name": event.key,
        "count": int(event.count),
        "cpu_time_total_us": float(event.cpu_time_total),
        "self_cpu_time_total_us": float(event.self_cpu_time_total),
        "device_time_total_us": float(getattr(event, "device_time_total", 0.0) or 0.0),
        "cpu_memory_usage_bytes": int(event.cpu_memory_usage),
    }


def show(report: ProfileReport) -> None:
    render.line(report.table)
    render.table(
        f"Time per stage over {report.active_steps} recorded step(s) ({report.clock} time)",
        ["stage", "ms", "share"],
        [[s.name, f"{s.ms:.1f}", f"{100 * s.share:.1f}%"] for s in report.stages],
    )
