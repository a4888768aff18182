"""``agc resume RUN_DIR``: continue a run from its newest complete checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import TrainReport
from agc_cli.errors import UsageError


def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `agc train`.")],
    checkpoint: o.Checkpoint = None,
    best: Annotated[bool, typer.Option("--best", help="Resume from best.pt.")] = False,
    epochs: o.Epochs = None,
    device: o.Device = None,
    num_workers: o.NumWorkers = None,
    save_every: o.SaveEvery = None,
    checkpoint_interval: o.CheckpointInterval = None,
    save_every_batch: o.SaveEveryBatch = None,
    patience: o.Patience = None,
    model: o.Model = None,
    gnn_type: o.GnnType = None,
    hidden_channels: o.HiddenChannels = None,
    num_layers: o.NumLayers = None,
    dataset: o.Dataset = None,
    seed: o.Seed = None,
    nproc_per_node: o.NprocPerNode = 1,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Continue training exactly where the run stopped (settings come from the checkpoint).

    --epochs, --device, --num-workers, --save-every*, --checkpoint-interval, --patience may
    change; settings that
    change the model or the data are refused (exit code 4). --nproc-per-node may differ from
    the run's: the rest of the epoch is then re-sharded (noted).
    """
    render.configure(json_out, quiet, verbose)
    overrides = o.settings_flags(locals(), exclude=("run_dir",))
    if nproc_per_node < 1:
        raise UsageError(f"nproc_per_node: expected >= 1, got {nproc_per_node}")
    from agc_cli.engine import distributed

    if nproc_per_node > 1 and not distributed.under_launcher():
        argv = ["resume", str(run_dir)]
        argv += ["--checkpoint", checkpoint] if checkpoint else []
        argv += ["--best"] if best else []
        for key, value in overrides.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        argv += [f for f, on in (("--json", json_out), ("--quiet", quiet),
                                 ("--verbose", verbose)) if on]  # fmt: skip
        render.note(f"resuming {run_dir} in {nproc_per_node} data-parallel processes ...")
        raise typer.Exit(distributed.launch(nproc_per_node, argv))
    try:
        report = _resume(run_dir, overrides, checkpoint, best)
        distributed.shutdown(synchronize=True)
    finally:
        distributed.shutdown()
    render.emit(report, show)


def show(report: TrainReport) -> None:
    for text in common.train_lines(report):
        render.line(text)


def _resume(run_dir: Path, overrides: dict, checkpoint: str | None, best: bool) -> TrainReport:
    from agc_cli.cli.progress import make_progress
    from agc_cli.engine.resume import resume as resume_run
    from agc_cli.engine.session import MODEL_FILE
    from agc_cli.utils.io import atomic_torch_save

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
            trainer.progress = make_progress()
        try:
            result = trainer.fit()
        finally:
            if main:
                trainer.progress.close()
        if main:
            atomic_torch_save(resumed.session.model.state_dict(), trainer.run.path / MODEL_FILE)
            common.write_loss_plot(trainer.run)
    finally:
        if main:
            trainer.run.release()
    return common.train_report(
        result, resumed.session, trainer.run if main else None, resumed.checkpoint.name
    )
