"""``agc train``: train a model full-batch or mini-batch into a run directory."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import typer
import yaml

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.progress import RichProgress
from agc_cli.engine import distributed
from agc_cli.engine.memory import PeakMemory
from agc_cli.engine.planner import fmt_bytes
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.session import Session, check_data_parallel, open_session
from agc_cli.engine.session import train as train_session
from agc_cli.errors import UsageError
from agc_cli.settings import Settings, load_settings


def train(
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
    save_every_batch: o.SaveEveryBatch = None,
    nproc_per_node: o.NprocPerNode = 1,
) -> None:
    """Train a self-supervised or clustering model; writes a run directory.

    Without --mini-batch/--full-batch the mode follows the `agc stats` recommendation.
    With --nproc-per-node N (or under torchrun) training is data-parallel and mini-batch.
    """
    flags = {k: v for k, v in locals().items() if k not in ("config", "nproc_per_node")}
    settings = load_settings(o.settings_flags(flags), config)
    if nproc_per_node < 1:
        raise UsageError(f"nproc_per_node: expected >= 1, got {nproc_per_node}")
    if nproc_per_node > 1 and not distributed.under_launcher():
        raise typer.Exit(launch_training(settings, nproc_per_node))
    try:
        session, run = start_session(settings)
        run_training(session, run)
    finally:
        distributed.shutdown()


def launch_training(settings: Settings, nproc: int) -> int:
    """Start ``nproc`` processes running ``agc train`` with these resolved settings."""
    check_data_parallel(settings)  # refuse before starting anything
    run = RunDir.reserve(settings)
    settings = settings.model_copy(update={"run_dir": str(run)})
    render.note(f"starting {nproc} data-parallel processes (torchrun) into {run} ...")
    with tempfile.TemporaryDirectory(prefix="agc-launch-") as tmp:
        config = Path(tmp) / "settings.yaml"
        config.write_text(yaml.safe_dump(settings.to_yaml_dict(), sort_keys=False))
        return distributed.launch(nproc, ["train", "--config", str(config)])


def start_session(settings: Settings) -> tuple[Session, RunDir | None]:
    """Load data and build the model (reporting what was decided), then create the run dir.

    In a data-parallel run, rank 0 alone creates the run directory and talks; the other ranks
    get ``None`` (and fail with rank 0's error if it could not create one).
    """
    render.note(f"loading {settings.dataset} ...")
    session = open_session(settings)
    if session.mode_reason:
        render.note(f"mode: {session.mode} ({session.mode_reason})")
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
        render.key_values("agc train", [*session.summary().items(), ("run dir", run.path)])
    return session, run


def run_training(session: Session, run: RunDir | None) -> Any:
    """Train into ``run``; a failure before the first checkpoint leaves no run folder behind,
    and the run's lock is released at the end."""
    progress = RichProgress() if session.dist.is_main else None
    try:
        with run.discard_on_failure() if run is not None else contextlib.nullcontext():
            _, result = train_session(session, run, progress)
    finally:
        if progress is not None:
            progress.close()
        if run is not None:
            run.release()
    stop = " (early stop)" if result.stopped_early else ""
    render.note(
        f"Training completed in {result.seconds:.2f} s "
        f"(avg {result.ms_per_epoch:.1f} ms/epoch){stop}; final loss {result.loss:.4f}"
    )
    render.note(f"Peak memory: {peak_line(result.peak)}")
    if run is not None:
        render.note(f"Run directory: {run.path}")
    return result


def peak_line(peak: PeakMemory) -> str:
    line = f"CPU RSS {fmt_bytes(peak.rss_bytes)}"
    if peak.cuda_bytes is not None:
        line += f", CUDA max allocated {fmt_bytes(peak.cuda_bytes)}"
    return line
