"""Checkpoints and resume: atomic writes, safe loading, bit-identical continuation."""

from __future__ import annotations

import os
import pickle
import signal

import pytest
import torch
from cli_helpers import run_agc

from agc_cli.engine import checkpoint as ckpt
from agc_cli.engine.progress import NullProgress
from agc_cli.engine.resume import resume
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.errors import CheckpointError, InterruptedRun
from agc_cli.settings import load_settings
from agc_cli.utils.io import atomic_torch_save

TINY = "sbm:nodes=300,clusters=3,degree=6,homophily=0.85,features=12,snr=2,seed=2"


def settings(tmp_path, name="run", **over):
    base = {"dataset": TINY, "model": "dgi", "hidden_channels": 8, "num_layers": 2,
            "fan_out": "4,4", "epochs": 4, "batch_size": 64, "lr": 0.01,
            "run_dir": tmp_path / name, "save_every": 1}  # fmt: skip
    return load_settings({**base, **over})


class StopAfter(NullProgress):
    """Acts on the trainer after ``n`` steps: a signal (clean stop) or an exception (crash)."""

    def __init__(self, n: int, how: str):
        self.n, self.how, self.trainer = n, how, None

    def advance(self, nodes: int) -> None:
        self.n -= 1
        if self.n == 0:
            if self.how == "signal":
                self.trainer._stop_signal = signal.SIGTERM
            else:
                raise RuntimeError("simulated kill -9")


def uninterrupted(tmp_path, **over):
    s = open_session(settings(tmp_path, "full", **over))
    trainer = Trainer(s.graph, s.model, s.settings, s.device, RunDir.create(s.settings))
    trainer.fit()
    return s.model.state_dict()


def interrupted_then_resumed(tmp_path, steps: int, how: str, **over):
    s = open_session(settings(tmp_path, "cut", **over))
    run = RunDir.create(s.settings)
    progress = StopAfter(steps, how)
    trainer = Trainer(s.graph, s.model, s.settings, s.device, run, progress)
    progress.trainer = trainer
    with pytest.raises((InterruptedRun, RuntimeError)):
        trainer.fit()
    resumed = resume(run.path, {})
    resumed.trainer.fit()
    return resumed.session.model.state_dict()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    ("mode", "steps", "how", "extra"),
    [
        ("full", 2, "signal", {}),  # between epochs (full-batch: one step per epoch)
        ("full", 3, "crash", {}),  # killed after epoch 3, last checkpoint at epoch 2... 3
        ("mini", 7, "signal", {}),  # mid-epoch (5 batches per epoch)
        ("mini", 8, "crash", {"save_every_batch": 2, "save_every": 0}),  # between checkpoints
        ("mini", 6, "signal", {"num_workers": 2}),
    ],
    ids=[
        "full-between-epochs",
        "full-kill",
        "mini-mid-epoch",
        "mini-kill-between-ckpts",
        "mini-workers",
    ],  # fmt: skip
)
def test_resumed_run_matches_uninterrupted_run(tmp_path, mode, steps, how, extra):
    over = {"mini_batch": mode == "mini", **extra}
    expected = uninterrupted(tmp_path, **over)
    got = interrupted_then_resumed(tmp_path, steps, how, **over)
    assert_same_weights(expected, got)


def test_sigterm_writes_checkpoint_and_names_resume_command(tmp_path):
    s = open_session(settings(tmp_path, mini_batch=True))
    run = RunDir.create(s.settings)
    progress = StopAfter(3, "signal")
    trainer = Trainer(s.graph, s.model, s.settings, s.device, run, progress)
    progress.trainer = trainer
    with pytest.raises(InterruptedRun) as info:
        trainer.fit()
    assert info.value.exit_code == 130
    assert f"agc resume {run.path}" in str(info.value)
    state = ckpt.load_checkpoint(run.checkpoints / "last.pt")
    assert state["trainer"]["batch"] == 3 and state["trainer"]["epoch"] == 0


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.pt"
    atomic_torch_save({"a": torch.ones(3)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full halfway")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"a": torch.zeros(3), "b": Boom()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/agc-pwned",))


def test_crafted_pickle_is_refused_without_running_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"schema": 1, "payload": Exploit()}, path)
    if os.path.exists("/tmp/agc-pwned"):
        os.remove("/tmp/agc-pwned")
    with pytest.raises(CheckpointError, match="not plain data"):
        ckpt.load_checkpoint(path)
    assert not os.path.exists("/tmp/agc-pwned")
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(raw)
    assert not os.path.exists("/tmp/agc-pwned")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.pt"
    torch.save({"schema": ckpt.SCHEMA_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="newer"):
        ckpt.load_checkpoint(path)


def trained_run(capsys, tmp_path) -> str:
    run = tmp_path / "run"
    r = run_agc(capsys, "train", "--dataset", TINY, "--hidden-channels", "8", "--epochs", "3",
                "--full-batch", "--run-dir", str(run))  # fmt: skip
    assert r.code == 0, r.err
    return str(run)


def test_resume_cli_refuses_shape_changes_and_notes_overrides(capsys, tmp_path):
    run = trained_run(capsys, tmp_path)
    for flag, value in [("--hidden-channels", "16"), ("--dataset", "sbm-small"),
                        ("--seed", "7"), ("--model", "gae")]:  # fmt: skip
        r = run_agc(capsys, "resume", run, flag, value)
        assert r.code == 4, (flag, r.err)
        assert flag.lstrip("-").replace("-", "_") in r.err
    r = run_agc(capsys, "resume", run, "--epochs", "5")
    assert r.code == 0, r.err
    assert "epochs: 3 → 5 (override)" in r.err
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 5


def test_resume_cli_corrupted_checkpoint_offers_previous(capsys, tmp_path):
    run = trained_run(capsys, tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    r = run_agc(capsys, "resume", run, "--epochs", "4")
    assert r.code == 4
    assert "truncated or corrupted" in r.err and "--checkpoint step-" in r.err
    assert len(last.read_bytes()) == len(data) // 2  # nothing overwritten


@pytest.mark.parametrize("case", ["missing-dir", "no-checkpoint", "bad-weights"])
def test_resume_cli_errors_exit_4(capsys, tmp_path, case):
    if case == "missing-dir":
        target = str(tmp_path / "nope")
    else:
        target = trained_run(capsys, tmp_path)
        ckdir = tmp_path / "run" / "checkpoints"
        if case == "no-checkpoint":
            for p in ckdir.iterdir():
                p.unlink()
        else:
            state = ckpt.load_checkpoint(ckdir / "last.pt")
            state["model"] = {"bogus": torch.zeros(1)}
            ckpt.save_checkpoint(ckdir / "last.pt", state)
    r = run_agc(capsys, "resume", target)
    assert r.code == 4, r.err
    assert len(r.err.strip().splitlines()) == 1
