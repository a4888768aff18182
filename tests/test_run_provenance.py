"""A run knows what its artifacts were made from: stale embeddings are never scored, and
``settings.yaml`` says what the run trains with."""

from __future__ import annotations

import hashlib
import os

import torch
import yaml
from cli_helpers import run_agc

TINY = "sbm:nodes=300,clusters=3,degree=8,homophily=0.9,features=12,snr=3,seed=2"


def _train(capsys, tmp_path, *extra: str) -> str:
    run = str(tmp_path / "run")
    r = run_agc(capsys, "train", "--dataset", TINY, "--hidden-channels", "8", "--epochs", "2",
                "--run-dir", run, *extra)  # fmt: skip
    assert r.code == 0, r.err
    return run


def _digest(path) -> bytes:
    return hashlib.blake2b(path.read_bytes()).digest()


def test_cluster_refuses_embeddings_of_weights_older_than_a_resume(capsys, tmp_path):
    run = _train(capsys, tmp_path)
    assert run_agc(capsys, "infer", run).code == 0
    state = torch.load(tmp_path / "run" / "embeddings.pt", weights_only=True)
    assert state["weights"]["file"] == "checkpoints/best.pt"
    assert run_agc(capsys, "cluster", run, "--runs", "1").code == 0
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    before = _digest(best)
    assert run_agc(capsys, "resume", run, "--epochs", "4").code == 0
    r = run_agc(capsys, "cluster", run, "--runs", "1")
    # Stale exactly when the resume replaced the weights `agc infer` uses (best.pt).
    assert r.code == (4 if _digest(best) != before else 0), r.err
    # A resume whose loss improved rewrites best.pt: simulated with the run's own last.pt.
    best.write_bytes((tmp_path / "run" / "checkpoints" / "last.pt").read_bytes())
    r = run_agc(capsys, "cluster", run, "--runs", "1")
    assert r.code == 4
    assert "older weights" in r.err and f"agc infer {run}" in r.err
    assert run_agc(capsys, "infer", run).code == 0  # fresh embeddings are scored again
    assert run_agc(capsys, "cluster", run, "--runs", "1").code == 0


def test_cluster_after_run_accepts_its_embeddings_until_weights_change(capsys, tmp_path):
    run = str(tmp_path / "run")
    r = run_agc(capsys, "run", "--dataset", TINY, "--hidden-channels", "8", "--epochs", "2",
                "--run-dir", run, "--runs", "1")  # fmt: skip
    assert r.code == 0, r.err
    assert run_agc(capsys, "cluster", run, "--runs", "1").code == 0
    # agc run embeds with the weights agc infer would use (best.pt: the lowest loss).
    state = torch.load(tmp_path / "run" / "embeddings.pt", weights_only=True)
    assert state["weights"]["file"] == "checkpoints/best.pt"
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"other weights")
    assert run_agc(capsys, "cluster", run, "--runs", "1").code == 4


def test_settings_yaml_holds_resolved_fan_out_and_is_updated_on_resume(capsys, tmp_path):
    run = _train(capsys, tmp_path, "--mini-batch", "--batch-size", "64", "--num-layers", "2")
    settings = yaml.safe_load((tmp_path / "run" / "settings.yaml").read_text())
    assert settings["mini_batch"] is True
    assert settings["fan_out"] == [15, 15]  # the rule of thumb the run used, not null
    assert settings["epochs"] == 2
    assert run_agc(capsys, "resume", run, "--epochs", "3").code == 0
    settings = yaml.safe_load((tmp_path / "run" / "settings.yaml").read_text())
    assert settings["epochs"] == 3


def test_run_files_get_the_usual_permissions_not_0600(capsys, tmp_path):
    run = _train(capsys, tmp_path)
    assert run_agc(capsys, "infer", run).code == 0
    mask = os.umask(0)
    os.umask(mask)
    for name in ("settings.yaml", "model.pt", "embeddings.pt", "checkpoints/last.pt"):
        mode = (tmp_path / "run" / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~mask, (name, oct(mode))
