"""``agc resume RUN_DIR``: continue a run from its newest complete checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.progress import RichProgress
from agc_cli.cli.train import peak_line
from agc_cli.engine import distributed
from agc_cli.engine.resume import resume as resume_run
from agc_cli.engine.session import MODEL_FILE
from agc_cli.errors import UsageError
from agc_cli.utils.io import atomic_torch_save


def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `agc train`.")],
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", help="A checkpoint of this run: a file name in checkpoints/."),
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
    nproc_per_node: o.NprocPerNode = 1,
) -> None:
    """Continue training exactly where the run stopped (settings come from the checkpoint).

    --epochs, --device, --num-workers, --save-every*, --patience may change; settings that
    change the model or the data are refused (exit code 4). --nproc-per-node may differ from
    the run's: the rest of the epoch is then re-sharded (noted).
    """
    overrides = {k: v for k, v in locals().items()
                 if k not in ("run_dir", "checkpoint", "best", "nproc_per_node")
                 and v is not None}  # fmt: skip
    if nproc_per_node < 1:
        raise UsageError(f"nproc_per_node: expected >= 1, got {nproc_per_node}")
    if nproc_per_node > 1 and not distributed.under_launcher():
        argv = ["resume", str(run_dir)]
        argv += ["--checkpoint", checkpoint] if checkpoint else []
        argv += ["--best"] if best else []
        for key, value in overrides.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        render.note(f"resuming {run_dir} in {nproc_per_node} data-parallel processes ...")
        raise typer.Exit(distributed.launch(nproc_per_node, argv))
    try:
        _resume(run_dir, overrides, checkpoint, best)
    finally:
        distributed.shutdown()


def _resume(run_dir: Path, overrides: dict, checkpoint: str | None, best: bool) -> None:
    resumed = resume_run(run_dir, overrides, checkpoint, best)
    trainer = resumed.trainer
    main = resumed.session.dist.is_main
    render.note(
        f"resuming {run_dir} from {resumed.checkpoint.name}: epoch {trainer.state.epoch + 1}, "
        f"batch {trainer.state.batch}, step {trainer.state.step}"
    )
    for note in resumed.notes:
        render.note(note)
    try:
        if main:
            trainer.run.truncate_metrics(trainer.state.epoch)
            trainer.progress = RichProgress()
        try:
            result = trainer.fit()
        finally:
            if main:
                trainer.progress.close()
        if main:
            atomic_torch_save(resumed.session.model.state_dict(), trainer.run.path / MODEL_FILE)
    finally:
        if main:
            trainer.run.release()
    render.note(
        f"Training completed in {result.seconds:.2f} s (avg {result.ms_per_epoch:.1f} ms/epoch); "
        f"final loss {result.loss:.4f}"
    )
    render.note(f"Peak memory: {peak_line(result.peak)}")
