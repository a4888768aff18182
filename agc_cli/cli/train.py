"""``agc train``: train a model full-batch or mini-batch into a run directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import TrainReport

if TYPE_CHECKING:
    from agc_cli.settings import Settings


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
    save_every_batch: o.SaveEveryBatch = None,
    nproc_per_node: o.NprocPerNode = 1,
    verify: o.Verify = False,
    dry_run: o.DryRun = False,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Train a self-supervised or clustering model; writes a run directory.

    Without --mini-batch/--full-batch the mode follows the `agc stats` recommendation.
    With --nproc-per-node N (or under torchrun) training is data-parallel and mini-batch.
    """
    render.configure(json_out, quiet, verbose)
    from agc_cli.settings import load_settings

    flags = o.settings_flags(locals())
    settings = load_settings(flags, config)
    common.validate_static(settings, processes=nproc_per_node)
    from agc_cli.engine.session import check_trainable

    check_trainable(settings)
    if dry_run:
        render.emit(common.dry_run(settings, flags, config), common.show_dry_run)
        return
    if verify:
        common.verify_dataset(settings.dataset)
    from agc_cli.engine import distributed

    if nproc_per_node > 1 and not distributed.under_launcher():
        raise typer.Exit(launch_training(settings, nproc_per_node, json_out, quiet, verbose))
    try:
        session, run = common.start_session(settings)
        report = common.run_training(session, run)
        distributed.shutdown(synchronize=True)
    finally:
        distributed.shutdown()
    render.emit(report, show)


def show(report: TrainReport) -> None:
    for text in common.train_lines(report):
        render.line(text)


def launch_training(
    settings: Settings, nproc: int, json_out: bool, quiet: bool, verbose: bool
) -> int:
    """Start ``nproc`` processes running ``agc train`` with these resolved settings (rank 0
    prints the result, in the same output mode)."""
    import tempfile
    from pathlib import Path

    import yaml

    from agc_cli.engine import distributed
    from agc_cli.engine.rundir import RunDir
    from agc_cli.engine.session import check_data_parallel

    check_data_parallel(settings)  # refuse before starting anything
    run = RunDir.reserve(settings)
    settings = settings.model_copy(update={"run_dir": str(run)})
    render.note(f"starting {nproc} data-parallel processes (torchrun) into {run} ...")
    flags = [f for f, on in (("--json", json_out), ("--quiet", quiet), ("--verbose", verbose))
             if on]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="agc-launch-") as tmp:
        config = Path(tmp) / "settings.yaml"
        config.write_text(yaml.safe_dump(settings.to_yaml_dict(), sort_keys=False))
        return distributed.launch(nproc, ["train", "--config", str(config), *flags])
