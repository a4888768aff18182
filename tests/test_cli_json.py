"""Every command's `--json` prints one JSON document and nothing else on stdout; without it,
results go to stdout and headers, notes and progress to stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import run_agc

TINY = "sbm:nodes=300,clusters=3,features=8"
FAST = ("--hidden-channels", "8", "--epochs", "1")


def as_json(r) -> dict:
    """The whole of stdout is one JSON document."""
    assert r.code == 0, r.err
    return json.loads(r.out)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained run with embeddings, shared by the commands that read a run."""
    run = tmp_path_factory.mktemp("json") / "run"
    cmd = [sys.executable, "-m", "agc_cli", "train", "--dataset", TINY, *FAST,
           "--run-dir", str(run), "--json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["run_dir"] == str(run) and report["epochs"] == 1
    return run


def test_train_json_has_numbers(capsys, tmp_path):
    out = as_json(run_agc(capsys, "train", "--dataset", TINY, *FAST,
                          "--run-dir", str(tmp_path / "run"), "--json"))  # fmt: skip
    assert out["run_dir"] == str(tmp_path / "run") and out["mode"] == "full-batch"
    assert all(is_number(out[k]) for k in ("seconds", "ms_per_epoch", "loss", "best_loss"))
    assert isinstance(out["peak"]["rss_bytes"], int) and out["epochs"] == 1
    assert [h["epoch"] for h in out["history"]] == [1]


def test_train_plain_puts_the_header_on_stderr_and_results_on_stdout(capsys, tmp_path):
    r = run_agc(capsys, "train", "--dataset", TINY, *FAST, "--run-dir", str(tmp_path / "run"))
    assert r.code == 0, r.err
    # `agc train > file` captures the results only: the panel and epoch lines are on stderr.
    assert "# agc train" in r.err and "loading" in r.err and "Epoch    1/1" in r.err
    assert "# agc train" not in r.out and "Epoch" not in r.out and "loading" not in r.out
    assert r.out.splitlines()[0].startswith("Training completed in")
    assert f"Run directory: {tmp_path / 'run'}" in r.out


def test_quiet_silences_stderr_but_keeps_results(capsys, tmp_path):
    r = run_agc(capsys, "train", "--dataset", TINY, *FAST, "--run-dir", str(tmp_path / "run"),
                "--quiet")  # fmt: skip
    assert r.code == 0 and r.err == ""
    assert "Training completed in" in r.out


def test_verbose_adds_the_resolved_settings(capsys, tmp_path):
    r = run_agc(capsys, "train", "--dataset", TINY, *FAST, "--run-dir", str(tmp_path / "run"),
                "--verbose")  # fmt: skip
    assert r.code == 0, r.err
    assert "  hidden_channels: 8" in r.err and "  infer_batch_size: " in r.err


def test_resume_json(capsys, trained):
    out = as_json(run_agc(capsys, "resume", str(trained), "--epochs", "2", "--json"))
    assert out["epochs"] == 2 and out["resumed_from"] == "last.pt"
    assert is_number(out["seconds"]) and is_number(out["loss"])


def test_infer_json(capsys, trained):
    out = as_json(run_agc(capsys, "infer", str(trained), "--json"))
    assert out["nodes"] == out["total_nodes"] == 300 and out["dim"] == 8
    assert is_number(out["seconds"]) and isinstance(out["peak"]["rss_bytes"], int)
    assert out["files"] == [str(trained / "embeddings.pt")]


def test_infer_invalid_override_is_a_usage_error(capsys, trained):
    r = run_agc(capsys, "infer", str(trained), "--infer-batch-size", "0")
    assert r.code == 2 and "infer_batch_size" in r.err and "internal" not in r.err


def test_cluster_json(capsys, trained):
    assert run_agc(capsys, "infer", str(trained)).code == 0
    out = as_json(run_agc(capsys, "cluster", str(trained), "--runs", "1", "--no-structure",
                          "--json"))  # fmt: skip
    assert out["n_clusters"] == 3 and len(out["runs"]) == 1 and out["nodes"] == 300
    assert is_number(out["mean"]["nmi"]) and is_number(out["runs"][0]["seconds"])
    assert out["metrics_file"] == str(trained / "metrics.json")


def test_run_json_stage_times_are_numbers(capsys, tmp_path):
    out = as_json(run_agc(capsys, "run", "--dataset", TINY, *FAST, "--runs", "1",
                          "--run-dir", str(tmp_path / "run"), "--json"))  # fmt: skip
    stages = {s["stage"]: s for s in out["stages"]}
    assert list(stages) == ["load + setup", "train", "infer", "cluster", "total"]
    assert all(is_number(s["seconds"]) for s in stages.values())
    assert isinstance(stages["train"]["peak"]["rss_bytes"], int)
    assert out["run_dir"] == str(tmp_path / "run") and is_number(out["metrics"]["mean"]["nmi"])
    assert is_number(out["train"]["loss"]) and out["infer"]["nodes"] == 300


def test_stats_json(capsys, tmp_path):
    out = as_json(run_agc(capsys, "stats", "Reddit", "--root", str(tmp_path), "--json"))
    assert out["dataset"]["nodes"] == 232_965 and out["dataset"]["available"] is False
    assert isinstance(out["estimates"]["full_batch_train"]["total"], int)
    assert isinstance(out["device"]["budget"], int)


def test_convert_json(capsys, tmp_path):
    out = as_json(run_agc(capsys, "convert", TINY, str(tmp_path / "store"), "--json"))
    assert out["path"] == str(tmp_path / "store") and out["meta"]["nodes"] == 300
    assert isinstance(out["bytes"], int) and out["bytes"] > 0 and is_number(out["seconds"])


def test_profile_json(capsys, tmp_path):
    out = as_json(
        run_agc(
            capsys,
            "profile",
            "--dataset",
            TINY,
            "--hidden-channels",
            "8",
            "--steps",
            "1",
            "--run-dir",
            str(tmp_path / "run"),
            "--json",
        )
    )
    assert out["stage"] == "train" and out["active_steps"] == 1
    assert out["stages"] and all(is_number(s["ms"]) for s in out["stages"])
    assert out["operators"] and is_number(out["operators"][0]["cpu_time_total_us"])
    assert out["trace"] == str(tmp_path / "run" / "trace.json")


def test_models_and_datasets_json(capsys, tmp_path):
    models = as_json(run_agc(capsys, "models", "--json"))["models"]
    assert {m["name"] for m in models} >= {"dgi", "kmeans"}
    datasets = as_json(run_agc(capsys, "datasets", "--root", str(tmp_path), "--json"))
    assert isinstance(datasets["datasets"][0]["nodes"], int)
