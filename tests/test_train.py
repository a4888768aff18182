"""`agc train` end to end and the shared trainer's paths (AMP, accumulation, divergence)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from cli_helpers import run_agc

from agc_cli.engine.session import open_session, train
from agc_cli.errors import DivergedError
from agc_cli.models.base import LossOutput
from agc_cli.settings import load_settings

TINY = "sbm:nodes=400,clusters=4,degree=8,homophily=0.85,features=16,snr=2,seed=1"


def args(tmp_path, *extra: str) -> list[str]:
    return ["train", "--dataset", TINY, "--hidden-channels", "16", "--epochs", "3",
            "--run-dir", str(tmp_path / "run"), *extra]  # fmt: skip


def test_train_writes_the_run_directory(capsys, tmp_path):
    r = run_agc(capsys, *args(tmp_path, "--model", "dgi", "--mini-batch", "--batch-size", "128"))
    assert r.code == 0, r.err
    run = tmp_path / "run"
    settings = yaml.safe_load((run / "settings.yaml").read_text())
    assert settings["mini_batch"] is True and settings["hidden_channels"] == 16
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert all(math.isfinite(x["loss"]) for x in lines)
    assert (run / "model.pt").is_file() and (run / "train.log").is_file()
    assert (run / "checkpoints" / "last.pt").is_file() and (
        run / "checkpoints" / "best.pt"
    ).is_file()
    assert "Training completed in" in r.out and "Peak memory: CPU RSS" in r.out  # the result
    assert "Epoch    3/3: loss=" in r.err


def test_mode_comes_from_the_recommendation_when_not_given(capsys, tmp_path):
    r = run_agc(capsys, *args(tmp_path))
    assert r.code == 0, r.err
    assert "planner: mini_batch full-batch (full-batch: 400 nodes < 10,000)" in r.err


def test_unknown_model_lists_valid_names(capsys, tmp_path):
    r = run_agc(capsys, *args(tmp_path, "--model", "nope"))
    assert r.code == 2
    assert "nope" in r.err and "dgi" in r.err and "gae" in r.err
    assert not (tmp_path / "run").exists()


def test_existing_run_dir_is_never_reused(capsys, tmp_path):
    assert run_agc(capsys, *args(tmp_path)).code == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    r = run_agc(capsys, *args(tmp_path))
    assert r.code == 2 and "agc resume" in r.err
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_bad_option_is_rejected_with_its_name(capsys, tmp_path):
    r = run_agc(capsys, *args(tmp_path, "--gnn-type", "gcn", "--heads", "4"))
    assert r.code == 2 and "heads" in r.err


def session(**overrides):
    base = {"dataset": TINY, "hidden_channels": 16, "epochs": 4, "model": "dgi"}
    return open_session(load_settings({**base, **overrides}))


@pytest.mark.parametrize("model", ["dgi", "gae", "ccassg", "dmon"])
@pytest.mark.parametrize("mini_batch", [False, True])
def test_each_model_trains_with_a_falling_loss(model, mini_batch):
    s = session(model=model, mini_batch=mini_batch, batch_size=128, epochs=6, lr=0.01,
                num_layers=2, fan_out="5,5")  # fmt: skip
    _, result = train(s, None)
    losses = [h["loss"] for h in result.history]
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-2:]) < losses[0]


def test_bf16_autocast_and_gradient_accumulation_run():
    s = session(mini_batch=True, batch_size=64, precision="bf16", accumulate=3, epochs=2)
    trainer, result = train(s, None)
    batches = math.ceil(400 / 64)
    assert trainer.state.step == 2 * math.ceil(batches / 3)
    assert all(math.isfinite(h["loss"]) for h in result.history)


def test_fp16_needs_cuda():
    from agc_cli.errors import UsageError

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UsageError, match="precision"):
        train(session(precision="16"), None)


def test_early_stopping_on_training_loss(monkeypatch):
    s = session(patience=2, epochs=50)
    monkeypatch.setattr(type(s.model), "loss",
                        lambda self, batch: LossOutput(self.weight.sum() * 0 + 1.0))  # fmt: skip
    _, result = train(s, None)
    assert result.stopped_early and result.epochs == 3


def test_non_finite_loss_stops_before_the_step_with_exit_5(capsys, tmp_path, monkeypatch):
    from agc_cli.models.dgi import DGI

    real = DGI.loss
    calls = {"n": 0}

    def flaky(self, batch):
        calls["n"] += 1
        out = real(self, batch)
        if calls["n"] == 3:
            return LossOutput(out.loss * float("nan"))
        return out

    monkeypatch.setattr(DGI, "loss", flaky)
    r = run_agc(capsys, *args(tmp_path, "--model", "dgi", "--full-batch", "--epochs", "5"))
    assert r.code == 5 and "non-finite loss" in r.err
    # what was saved before the divergence is kept
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_divergence_raises_before_optimizer_step(monkeypatch):
    s = session()
    before = {k: p.detach().clone() for k, p in s.model.named_parameters()}

    def diverged(self, batch):
        return LossOutput(self.weight.sum() * float("inf"))

    monkeypatch.setattr(type(s.model), "loss", diverged)
    with pytest.raises(DivergedError):
        train(s, None)
    for k, p in s.model.named_parameters():
        assert torch.equal(p.detach(), before[k])


def test_adaptive_fan_out_grows_linearly_over_epochs():
    from agc_cli.engine.trainer import Trainer

    s = session(mini_batch=True, num_layers=2, fan_out="2,2", fan_out_final="10,-1", epochs=5)
    trainer = Trainer(s.graph, s.model, s.settings, s.device)
    assert [trainer.fan_out_at(e) for e in range(5)] == [[2, 2], [4, 2], [6, 2], [8, 2],
                                                         [10, -1]]  # fmt: skip
    _, result = train(s, None)
    assert len(result.history) == 5


@pytest.mark.parametrize("norm", [None, "block", "subgraph"])
def test_sampled_norm_reaches_every_training_batch(capsys, tmp_path, monkeypatch, norm):
    # --sampled-norm travels flag -> settings.yaml -> every batch the trainer builds
    # (rescale when not given).
    from agc_cli.models.batch import GraphBatch

    seen = []
    original = GraphBatch.from_sampled.__func__

    def recording(cls, data, graph, device="cpu", normalization="rescale"):
        seen.append(normalization)
        return original(cls, data, graph, device, normalization)

    monkeypatch.setattr(GraphBatch, "from_sampled", classmethod(recording))
    extra = ["--sampled-norm", norm] if norm else []
    r = run_agc(capsys, *args(tmp_path, "--model", "dgi", "--mini-batch", "--batch-size", "128",
                              *extra))  # fmt: skip
    assert r.code == 0, r.err
    want = norm or "rescale"
    assert yaml.safe_load((tmp_path / "run" / "settings.yaml").read_text())["sampled_norm"] == want
    assert seen and set(seen) == {want}
