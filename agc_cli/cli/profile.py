"""``agc profile``: a few training (or inference) steps under ``torch.profiler``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agc_cli.cli import options as o
from agc_cli.cli import render
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
from agc_cli.errors import UsageError
from agc_cli.settings import load_settings

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
    flags = {k: v for k, v in locals().items() if k in {
        "dataset", "root", "cache_dir", "model", "gnn_type", "hidden_channels", "num_layers",
        "heads", "mini_batch", "batch_size", "fan_out", "lr", "device", "precision",
        "num_workers", "seed", "run_dir", "infer_batch_size"}}  # fmt: skip
    settings = load_settings(o.settings_flags(flags), config)
    cfg = ProfileConfig(wait=wait, warmup=warmup, active=active)
    render.note(f"loading {settings.dataset} ...")
    session = open_session(settings)
    run = RunDir.create(session.settings)
    trace = output or run.path / "trace.json"
    dev = session.device
    total = cfg.steps
    # Enough epochs to reach the step budget whatever the batches per epoch.
    long_settings = session.settings.model_copy(update={"epochs": max(total, 1), "save_every": 0})
    with cuda_memory_history(dev, run.path / "memory_snapshot.pickle"):
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
    key = sort or ("device_time_total" if dev.type == "cuda" else "cpu_time_total")
    table = torch_prof.key_averages().table(sort_by=key, row_limit=row_limit)
    print(table)
    shares = stage_summary(torch_prof, dev)
    total_ms = sum(shares.values()) or 1.0
    clock = "device" if dev.type == "cuda" else "CPU"
    render.table(
        f"Time per stage over {cfg.active} recorded step(s) ({clock} time)",
        ["stage", "ms", "share"],
        [[name, f"{ms:.1f}", f"{100 * ms / total_ms:.1f}%"] for name, ms in shares.items()],
    )
    render.note(f"wrote {trace} (open in chrome://tracing or ui.perfetto.dev)")
    if dev.type == "cuda":
        render.note(f"wrote {run.path / 'memory_snapshot.pickle'} (pytorch.org/memory_viz)")
