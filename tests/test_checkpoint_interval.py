"""Periodic checkpoints at most every ``checkpoint_interval`` seconds; best.pt stays exact."""

from __future__ import annotations

import signal

import pytest
import torch

from agc_cli.engine import checkpoint as ckpt
from agc_cli.engine.progress import NullProgress
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.errors import InterruptedRun
from agc_cli.settings import load_settings

TINY = "sbm:nodes=200,clusters=3,degree=6,homophily=0.85,features=12,snr=2,seed=2"


class Spy(NullProgress):
    """Records the numbered checkpoints present after each epoch; optionally signals a stop."""

    def __init__(self, run: RunDir, stop_after: int | None = None):
        self.run, self.stop_after, self.trainer, self.steps = run, stop_after, None, 0

    def advance(self, nodes: int) -> None:
        self.steps += 1
        if self.stop_after is not None and self.steps == self.stop_after:
            self.trainer._stop_signal = signal.SIGTERM


def trained(tmp_path, stop_after=None, **over):
    base = {"dataset": TINY, "model": "gae", "hidden_channels": 8, "num_layers": 1,
            "epochs": 8, "lr": 0.01, "run_dir": tmp_path / "run", "save_every": 1,
            "keep_checkpoints": 50, "patience": 0}  # fmt: skip
    s = open_session(load_settings({**base, **over}))
    run = RunDir.create(s.settings)
    spy = Spy(run, stop_after)
    trainer = Trainer(s.graph, s.model, s.settings, s.device, run, spy)
    spy.trainer = trainer
    return trainer, run


def numbered(run: RunDir) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in run.checkpoints.glob("step-*.pt"))


def test_long_interval_writes_only_the_first_and_the_last_checkpoint(tmp_path):
    trainer, run = trained(tmp_path, checkpoint_interval=1e9)
    trainer.fit()
    assert numbered(run) == [1, 8]


def test_zero_interval_checkpoints_every_save_every_epochs(tmp_path):
    trainer, run = trained(tmp_path, checkpoint_interval=0, save_every=2)
    trainer.fit()
    assert numbered(run) == [2, 4, 6, 8]


def test_best_pt_holds_the_lowest_loss_epoch_although_written_late(tmp_path):
    trainer, run = trained(tmp_path, checkpoint_interval=1e9)
    result = trainer.fit()
    losses = [h["loss"] for h in result.history]
    best = ckpt.load_checkpoint(run.checkpoints / ckpt.BEST)
    assert best["trainer"]["best_loss"] == pytest.approx(min(losses))
    assert best["trainer"]["epoch"] == losses.index(min(losses)) + 1
    # Its weights are that epoch's, not the final ones, unless the last epoch was the best.
    last = ckpt.load_checkpoint(run.checkpoints / ckpt.LAST)
    tensors = [k for k, v in best["model"].items() if isinstance(v, torch.Tensor)]
    same = all(torch.equal(best["model"][k], last["model"][k]) for k in tensors)
    assert same == (best["trainer"]["epoch"] == len(losses))


def test_an_interrupted_run_writes_the_pending_best_with_its_last_checkpoint(tmp_path):
    trainer, run = trained(tmp_path, stop_after=5, checkpoint_interval=1e9)
    with pytest.raises(InterruptedRun):
        trainer.fit()
    last = ckpt.load_checkpoint(run.checkpoints / ckpt.LAST)
    best = ckpt.load_checkpoint(run.checkpoints / ckpt.BEST)
    assert (last["trainer"]["epoch"], last["trainer"]["batch"]) == (4, 1)  # after step 5
    assert best["trainer"]["best_loss"] == last["trainer"]["best_loss"]
