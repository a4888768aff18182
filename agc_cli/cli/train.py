"""``agc train``: train a model full-batch or mini-batch into a run directory."""

from __future__ import annotations

from typing import Any

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.progress import RichProgress
from agc_cli.engine.memory import PeakMemory
from agc_cli.engine.planner import fmt_bytes
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.session import Session, open_session
from agc_cli.engine.session import train as train_session
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
) -> None:
    """Train a self-supervised or clustering model; writes a run directory.

    Without --mini-batch/--full-batch the mode follows the `agc stats` recommendation.
    """
    flags = {k: v for k, v in locals().items() if k != "config"}
    settings = load_settings(o.settings_flags(flags), config)
    session, run = start_session(settings)
    run_training(session, run)


def start_session(settings: Settings) -> tuple[Session, RunDir]:
    """Load data and build the model (reporting what was decided), then create the run dir."""
    render.note(f"loading {settings.dataset} ...")
    session = open_session(settings)
    if session.mode_reason:
        render.note(f"mode: {session.mode} (from the stats recommendation: {session.mode_reason})")
    run = RunDir.create(session.settings)
    render.key_values("agc train", [*session.summary().items(), ("run dir", run.path)])
    return session, run


def run_training(session: Session, run: RunDir) -> Any:
    progress = RichProgress()
    try:
        _, result = train_session(session, run, progress)
    finally:
        progress.close()
    stop = " (early stop)" if result.stopped_early else ""
    render.note(
        f"Training completed in {result.seconds:.2f} s "
        f"(avg {result.ms_per_epoch:.1f} ms/epoch){stop}; final loss {result.loss:.4f}"
    )
    render.note(f"Peak memory: {peak_line(result.peak)}")
    render.note(f"Run directory: {run.path}")
    return result


def peak_line(peak: PeakMemory) -> str:
    line = f"CPU RSS {fmt_bytes(peak.rss_bytes)}"
    if peak.cuda_bytes is not None:
        line += f", CUDA max allocated {fmt_bytes(peak.cuda_bytes)}"
    return line
