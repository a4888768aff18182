"""`agc profile` writes a valid chrome trace with the labelled pipeline stages."""

from __future__ import annotations

import json

from cli_helpers import run_agc

from agc_cli.engine.profiling import NullProfiler

TINY = "sbm:nodes=300,clusters=3,degree=6,features=12,seed=3"


def test_profile_train_exports_trace_with_stages(capsys, tmp_path):
    trace = tmp_path / "out" / "trace.json"
    r = run_agc(capsys, "profile", "--dataset", TINY, "--mini-batch", "--batch-size", "64",
                "--hidden-channels", "8", "--num-layers", "2", "--fan-out", "3,3",
                "--wait", "1", "--warmup", "1", "--active", "2", "--run-dir",
                str(tmp_path / "run"), "--output", str(trace))  # fmt: skip
    assert r.code == 0, r.err
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e.get("name") for e in events}
    for stage in ("sampling", "feature fetch", "host-to-device copy", "forward", "loss", "backward",
                  "optimizer step"):  # fmt: skip
        assert f"agc::{stage}" in names, stage
    assert "Self CPU time total" in r.out  # the key_averages table
    assert "share" in r.out and "backward" in r.out


def test_profile_infer_stage(capsys, tmp_path):
    r = run_agc(capsys, "profile", "--stage", "infer", "--dataset", TINY, "--hidden-channels",
                "8", "--run-dir", str(tmp_path / "run"))  # fmt: skip
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "run" / "trace.json").read_text())["traceEvents"]


def test_profile_rejects_bad_options(capsys, tmp_path):
    assert run_agc(capsys, "profile", "--stage", "eval").code == 2
    assert run_agc(capsys, "profile", "--active", "0").code == 2
    assert run_agc(capsys, "profile", "--sort", "nonsense").code == 2


def test_disabled_profiler_is_a_no_op():
    with NullProfiler() as p:
        p.step()
