"""``agc resume RUN_DIR``: continue a run from its newest complete checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.progress import RichProgress
from agc_cli.cli.train import peak_line
from agc_cli.engine.resume import resume as resume_run
from agc_cli.engine.session import MODEL_FILE
from agc_cli.utils.io import atomic_torch_save


def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `agc train`.")],
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", help="Checkpoint file name (in checkpoints/) or path."),
    ] = None,
    best: Annotated[bool, typer.Option("--best", help="Resume from best.pt.")] = False,
    epochs: o.Epochs = None,
    device: o.Device = None,
    num_workers: o.NumWorkers = None,
    save_every: o.SaveEvery = None,
    save_every_batch: o.SaveEveryBatch = None,
    patience: o.Patience = None,
    model: o.Model = None,
    gnn_type: o.GnnType = None,
    hidden_channels: o.HiddenChannels = None,
    num_layers: o.NumLayers = None,
    dataset: o.Dataset = None,
    seed: o.Seed = None,
) -> None:
    """Continue training exactly where the run stopped (settings come from the checkpoint).

    --epochs, --device, --num-workers, --save-every*, --patience may change; settings that
    change the model or the data are refused (exit code 4).
    """
    overrides = {k: v for k, v in locals().items()
                 if k not in ("run_dir", "checkpoint", "best") and v is not None}  # fmt: skip
    resumed = resume_run(run_dir, overrides, checkpoint, best)
    trainer = resumed.trainer
    render.note(
        f"resuming {run_dir} from {resumed.checkpoint.name}: epoch {trainer.state.epoch + 1}, "
        f"batch {trainer.state.batch}, step {trainer.state.step}"
    )
    for note in resumed.notes:
        render.note(note)
    trainer.run.truncate_metrics(trainer.state.epoch)
    progress = RichProgress()
    trainer.progress = progress
    try:
        result = trainer.fit()
    finally:
        progress.close()
    atomic_torch_save(resumed.session.model.state_dict(), trainer.run.path / MODEL_FILE)
    render.note(
        f"Training completed in {result.seconds:.2f} s (avg {result.ms_per_epoch:.1f} ms/epoch); "
        f"final loss {result.loss:.4f}"
    )
    render.note(f"Peak memory: {peak_line(result.peak)}")
