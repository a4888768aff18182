"""Hostile and careless input around runs (issue 11, classes 3, 5, 6 and 7).

3 data loss: a run never takes over a user's folder, another run's checkpoint or another
  process's run, and a subset's embeddings never replace the all-node ones.
5 exit codes: a user mistake is a one-line error with its class's code, never "internal error".
6 silent acceptance: contradictions and mismatches are refused, or what was done is said.
7 leftovers: killed or failed starts, temporaries and partial stores are cleaned up or reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_helpers import graph_dir, run_agc

from agc_cli.engine import checkpoint as ckpt
from agc_cli.engine.rundir import RunDir
from agc_cli.engine.session import open_session
from agc_cli.engine.session import train as train_session
from agc_cli.settings import load_settings

TINY = "sbm:nodes=300,clusters=3,degree=6,homophily=0.85,features=8,snr=2,seed=3"
TRAIN = ["--dataset", TINY, "--hidden-channels", "8", "--epochs", "1", "--full-batch"]


# ----- fixtures -------------------------------------------------------------------------------


def _train_template(base: Path, model: str) -> Path:
    s = load_settings({"dataset": TINY, "model": model, "hidden_channels": 8, "epochs": 2,
                       "mini_batch": False, "run_dir": base / "run", "cache_dir": base / "cache",
                       "runs": 1})  # fmt: skip
    session = open_session(s)
    run = RunDir.create(session.settings)
    train_session(session, run)
    run.release()
    return run.path


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """Two trained runs (dgi and gae), trained once; tests work on copies."""
    return {m: _train_template(tmp_path_factory.mktemp(m), m) for m in ("dgi", "gae")}


@pytest.fixture
def run(templates, tmp_path) -> Path:
    return Path(shutil.copytree(templates["dgi"], tmp_path / "run"))


@pytest.fixture
def other_run(templates, tmp_path) -> Path:
    return Path(shutil.copytree(templates["gae"], tmp_path / "other"))


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has finished."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def one_error(r, code: int) -> str:
    """Assert exit ``code`` with exactly one ``error:`` line on stderr (no internal error)."""
    assert r.code == code, r.err
    assert "internal error" not in r.err and "Traceback" not in r.err, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.err
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ----- class 3: data loss ---------------------------------------------------------------------


@pytest.mark.parametrize("content", ["user-file", "user-subdir", "run-results"])
def test_run_dir_with_foreign_or_finished_content_is_refused(capsys, tmp_path, content):
    target = tmp_path / "target"
    target.mkdir()
    if content == "user-file":
        (target / "thesis.tex").write_text("precious")
    elif content == "user-subdir":
        (target / "data").mkdir()
        (target / "data" / "x.csv").write_text("1,2")
    else:  # a run with results but no weights (a non-parametric model's run)
        (target / "settings.yaml").write_text("run_id: abc\n")
        (target / "embeddings.pt").write_bytes(b"results")
    before = snapshot(target)
    line = one_error(run_agc(capsys, "train", *TRAIN, "--run-dir", str(target)), 2)
    assert str(target) in line
    assert snapshot(target) == before


@pytest.mark.parametrize("how", ["path-to-other-run", "copied-into-this-run", "symlink-out"])
def test_checkpoint_of_another_run_is_refused(capsys, run, other_run, how):
    theirs = other_run / "checkpoints" / "last.pt"
    if how == "path-to-other-run":
        arg = str(theirs)
    elif how == "copied-into-this-run":
        shutil.copy(theirs, run / "checkpoints" / "theirs.pt")
        arg = "theirs.pt"
    else:
        (run / "checkpoints" / "link.pt").symlink_to(theirs)
        arg = "link.pt"
    before = snapshot(run)
    line = one_error(run_agc(capsys, "resume", str(run), "--checkpoint", arg, "--epochs", "3"), 4)
    assert "not a checkpoint of" in line
    assert snapshot(run) == before  # model.pt, metrics and settings untouched
    one_error(run_agc(capsys, "infer", str(run), "--checkpoint", arg), 4)


def test_every_checkpoint_records_its_run_id(run):
    run_id = RunDir(run).run_id
    assert run_id and yaml.safe_load((run / "settings.yaml").read_text())["run_id"] == run_id
    for path in (run / "checkpoints").glob("*.pt"):
        assert ckpt.load_checkpoint(path)["run_id"] == run_id


@pytest.mark.parametrize("command", ["resume", "train-reuse"])
def test_second_writer_of_a_run_is_refused_while_the_first_holds_it(capsys, run, command):
    if command == "train-reuse":  # an unstarted run another process is starting
        for p in [run / "model.pt", *(run / "checkpoints").iterdir()]:
            p.unlink()
    before = snapshot(run)
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the "other process" (its own lock)
        os.ftruncate(fd, 0)
        os.write(fd, b"4242\n")
        if command == "resume":
            r = run_agc(capsys, "resume", str(run), "--epochs", "3")
        else:
            r = run_agc(capsys, "train", *TRAIN, "--run-dir", str(run))
        line = one_error(r, 2)
        assert "in use by another agc process (pid 4242)" in line
    finally:
        os.close(fd)
    after = snapshot(run)
    after.pop(".lock", None)
    before.pop(".lock", None)
    assert after == before


def test_resume_takes_the_lock_and_releases_it(capsys, run):
    assert run_agc(capsys, "resume", str(run), "--epochs", "3").code == 0
    fd = os.open(run / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once resume returned
    finally:
        os.close(fd)
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


@pytest.mark.parametrize("subset", ["nodes", "labeled"])
def test_subset_embeddings_never_replace_all_node_embeddings(capsys, tmp_path, run, subset):
    assert run_agc(capsys, "infer", str(run)).code == 0
    assert run_agc(capsys, "cluster", str(run), "--runs", "1").code == 0
    kept = {n: (run / n).read_bytes() for n in ("embeddings.pt", "clusters.csv", "metrics.json")}
    if subset == "nodes":
        ids = tmp_path / "picked.txt"
        ids.write_text("7\n3\n250\n")
        r = run_agc(capsys, "infer", str(run), "--nodes", str(ids))
        name = "picked"
    else:
        r = run_agc(capsys, "infer", str(run), "--labeled")
        name = "labeled"
    assert r.code == 0, r.err
    sub = torch.load(run / f"embeddings-{name}.pt", weights_only=True)
    if subset == "nodes":
        assert sub["node_ids"].tolist() == [7, 3, 250]
    assert f"--embeddings embeddings-{name}.pt" in r.err
    r = run_agc(capsys, "cluster", str(run), "--embeddings", f"embeddings-{name}.pt", "--runs", "1",
                "--no-structure")  # a few nodes have no edges among them  # fmt: skip
    assert r.code == 0, r.err
    assert (run / f"clusters-{name}.csv").is_file() and (run / f"metrics-{name}.json").is_file()
    assert {n: (run / n).read_bytes() for n in kept} == kept


def test_cluster_of_a_run_reads_only_the_runs_own_embeddings(capsys, tmp_path, run):
    outside = tmp_path / "emb.npy"
    np.save(outside, np.zeros((300, 4), np.float32))
    line = one_error(run_agc(capsys, "cluster", str(run), "--embeddings", str(outside)), 2)
    assert "not a file of" in line


# ----- class 5: exit codes --------------------------------------------------------------------


def _bad_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(bytes(range(128, 256)) * 3)
    return ["train", *TRAIN, "--config", str(path)]


def _truncated_npz(tmp_path):
    path = tmp_path / "g.npz"
    np.savez(path, edge_index=np.array([[0, 1], [1, 0]]), x=np.ones((2, 3), np.float32))
    path.write_bytes(path.read_bytes()[:100])
    return ["train", "--dataset", str(path), "--epochs", "1"]


def _empty_npy(tmp_path):
    folder = graph_dir(tmp_path, np.ones((2, 3), np.float32))
    (folder / "x.npy").write_bytes(b"")
    return ["train", "--dataset", str(folder), "--epochs", "1"]


def _no_nodes(tmp_path):
    folder = graph_dir(tmp_path, np.zeros((0, 3), np.float32), edges=np.zeros((2, 0), np.int64))
    return ["train", "--dataset", str(folder), "--epochs", "1"]


def _huge_label(tmp_path):
    x = np.ones((3, 3), np.float32)
    edges, y = np.array([[0, 1, 2], [1, 2, 0]]), np.array([0, 1, 10**9])
    folder = graph_dir(tmp_path, x, edges=edges, y=y)
    return ["run", "--dataset", str(folder), "--epochs", "1", "--run-dir", str(tmp_path / "r")]


def _run_dir_below_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return ["train", *TRAIN, "--run-dir", str(tmp_path / "afile" / "sub")]


def _store_with(tmp_path, key, value):
    from agc_cli.data.sources import convert_dataset

    out = tmp_path / "store"
    convert_dataset(TINY, out, tmp_path, tmp_path / "cache")
    meta = json.loads((out / "meta.json").read_text())
    meta[key] = value
    (out / "meta.json").write_text(json.dumps(meta))
    return ["stats", str(out)]


BAD_INPUT = {
    "random-bytes-config": (_bad_config, 2),
    "truncated-npz": (_truncated_npz, 3),
    "zero-byte-x-npy": (_empty_npy, 3),
    "graph-with-no-nodes": (_no_nodes, 3),
    "label-of-a-billion": (_huge_label, 3),
    "huge-batch-size": (lambda t: ["train", *TRAIN, "--batch-size", "9" * 20], 2),
    "run-dir-below-a-file": (_run_dir_below_a_file, 2),
    "store-nodes-many": (lambda t: _store_with(t, "nodes", "many"), 3),
    "store-edges-negative": (lambda t: _store_with(t, "edges", -4), 3),
    "convert-below-a-file": (lambda t: ["convert", TINY, _run_dir_below_a_file(t)[-1]], 2),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_a_one_line_error_with_its_exit_code(capsys, tmp_path, case):
    make, code = BAD_INPUT[case]
    args = make(tmp_path)
    one_error(run_agc(capsys, *args), code)
    if case == "label-of-a-billion":
        assert not (tmp_path / "r").exists()  # refused before training


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("where", ["run-dir", "cache-dir", "plot", "output-dir"])
def test_unwritable_locations_are_usage_errors(capsys, tmp_path, monkeypatch, run, where):
    (tmp_path / "afile").write_text("x")
    for place in (tmp_path / "afile" / "sub", Path("/proc/agc-test/sub")):
        if where == "run-dir":
            r = run_agc(capsys, "train", *TRAIN, "--run-dir", str(place))
        elif where == "cache-dir":
            monkeypatch.setenv("AGC_CACHE_DIR", str(place))
            r = run_agc(capsys, "train", *TRAIN, "--run-dir", str(tmp_path / "r"))
        else:
            assert run_agc(capsys, "infer", str(run)).code == 0
            flag = "--plot" if where == "plot" else "--output-dir"
            target = place / "p.png" if where == "plot" else place
            r = run_agc(capsys, "cluster", str(run), "--runs", "1", flag, str(target))
        one_error(r, 2)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "damage", ["etc-passwd", "garbage", "schema-string", "no-settings", "settings-a-list"]
)
def test_damaged_checkpoints_exit_4(capsys, run, damage):
    last = run / "checkpoints" / "last.pt"
    if damage == "etc-passwd":
        args = ["--checkpoint", "/etc/passwd"]
    elif damage == "garbage":
        shutil.copy("/etc/passwd" if Path("/etc/passwd").is_file() else __file__, last)
        args = []
    else:
        state = ckpt.load_checkpoint(last)
        if damage == "schema-string":
            state["schema"] = "1"
        elif damage == "no-settings":
            del state["settings"]
        else:
            state["settings"] = ["a", "list"]
        torch.save(state, last)
        args = []
    one_error(run_agc(capsys, "resume", str(run), "--epochs", "3", *args), 4)


@pytest.mark.parametrize("content", ["- a\n- b\n", "7\n", "'text'\n", "{unclosed: [\n"])
def test_run_settings_file_that_is_not_a_mapping_exits_4(capsys, run, content):
    (run / "settings.yaml").write_text(content)
    for command in (["resume", str(run)], ["infer", str(run)]):
        one_error(run_agc(capsys, *command), 4)


def test_resume_with_invalid_override_is_a_usage_error(capsys, run):
    line = one_error(run_agc(capsys, "resume", str(run), "--epochs", "0"), 2)
    assert line.startswith("error: epochs:")


# ----- class 6: silent acceptance -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["train", *TRAIN, "--mini-batch"],
        ["train", *TRAIN, "--labeled-only", "--all-nodes"],
        ["cluster", "--embeddings", "e.npy", "--normalize", "--no-normalize"],
    ],
    ids=["mini-and-full-batch", "labeled-only-and-all-nodes", "normalize-and-not"],
)
def test_contradictory_flags_are_refused(capsys, tmp_path, args):
    args = [*args, "--run-dir", str(tmp_path / "r")] if args[0] == "train" else args
    line = one_error(run_agc(capsys, *args), 2)
    assert "contradict" in line
    assert not (tmp_path / "r").exists()


def test_resume_best_with_checkpoint_is_refused(capsys, run):
    line = one_error(run_agc(capsys, "resume", str(run), "--best", "--checkpoint", "last.pt"), 2)
    assert "--best" in line and "--checkpoint" in line


@pytest.mark.parametrize("text", ["5\n", "0\n", "false\n", "[]\n", "''\n", "- epochs: 3\n"])
def test_config_that_is_not_a_mapping_is_refused(capsys, tmp_path, text):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    args = ["train", *TRAIN, "--config", str(config), "--run-dir", str(tmp_path / "r")]
    assert "must hold a mapping" in one_error(run_agc(capsys, *args), 2)
    assert not (tmp_path / "r").exists()


def test_empty_config_is_accepted_as_no_settings(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("# nothing yet\n")
    assert load_settings(config=config).epochs == load_settings().epochs


def test_features_of_width_zero_are_refused(capsys, tmp_path):
    folder = graph_dir(tmp_path, np.ones((2, 0), np.float32))
    args = ["train", "--dataset", str(folder), "--run-dir", str(tmp_path / "r")]
    assert "width 0" in one_error(run_agc(capsys, *args), 3)


def test_embeddings_with_too_few_rows_are_refused(capsys, tmp_path):
    emb = tmp_path / "e.npy"
    np.save(emb, np.random.default_rng(0).random((10, 4), np.float32))
    line = one_error(run_agc(capsys, "cluster", "--embeddings", str(emb), "--dataset", TINY), 3)
    assert "10 rows" in line and "300 nodes" in line


def test_clustering_a_subset_says_so(capsys, tmp_path, run):
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n2\n3\n4\n5\n6\n")
    assert run_agc(capsys, "infer", str(run), "--nodes", str(ids)).code == 0
    r = run_agc(capsys, "cluster", str(run), "--embeddings", "embeddings-ids.pt", "--runs", "1",
                "--no-structure")  # fmt: skip
    assert r.code == 0, r.err
    assert "clustering 6 of 300 nodes" in r.err


@pytest.mark.parametrize(("name", "written"), [("c1", "c1.png"), ("c1.svg", "c1.svg")])
def test_plot_name_says_the_file_written(capsys, tmp_path, run, name, written):
    assert run_agc(capsys, "infer", str(run)).code == 0
    r = run_agc(capsys, "cluster", str(run), "--runs", "1", "--plot", str(tmp_path / name))
    assert r.code == 0, r.err
    assert f"wrote {tmp_path / written}" in r.err
    assert (tmp_path / written).is_file()


def test_plot_with_an_unknown_format_is_refused_before_clustering(capsys, tmp_path, run):
    assert run_agc(capsys, "infer", str(run)).code == 0
    r = run_agc(capsys, "cluster", str(run), "--plot", str(tmp_path / "c1.v2"))
    assert "not an image format" in one_error(r, 2)
    assert not (run / "clusters.csv").exists()


# ----- class 7: leftovers ---------------------------------------------------------------------


def _killed_start(tmp_path: Path, dead_pid: int) -> Path:
    """What kill -9 during the first checkpoint write leaves: settings, one epoch's metrics,
    the log, a half-written checkpoint temporary, no checkpoint, no model."""
    s = load_settings({"dataset": TINY, "hidden_channels": 8, "epochs": 2, "mini_batch": False,
                       "run_dir": tmp_path / "stub"})  # fmt: skip
    run = RunDir.create(s)
    run.append_metrics({"epoch": 1, "loss": 1.0})
    run.logger().info("epoch 1")
    run.checkpoints.mkdir()
    (run.checkpoints / f".best.pt.{dead_pid}.abcd1234.tmp").write_bytes(b"half")
    run.release()
    run._close_log()
    return run.path


def test_killed_first_checkpoint_write_leaves_a_run_train_may_reuse(capsys, tmp_path, dead_pid):
    stub = _killed_start(tmp_path, dead_pid)
    line = one_error(run_agc(capsys, "resume", str(stub)), 4)
    assert f"agc train --config {stub / 'settings.yaml'}" in line
    r = run_agc(capsys, "train", "--config", str(stub / "settings.yaml"))
    assert r.code == 0, r.err
    epochs = [json.loads(x)["epoch"] for x in (stub / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # the old partial epoch is gone, not duplicated
    assert not list(stub.rglob("*.tmp"))
    assert (stub / "model.pt").is_file()


@pytest.mark.parametrize("opener", ["resume", "infer"])
def test_orphan_temporaries_are_removed_at_the_next_open(capsys, run, dead_pid, opener):
    stale = [run / "checkpoints" / f".last.pt.{dead_pid}.aaaa1111.tmp",
             run / "checkpoints" / ".step-00000002.pt.bbbb2222.tmp",  # older name, no pid
             run / f".embeddings.pt.{dead_pid}.cccc3333.tmp"]  # fmt: skip
    live = run / ".embeddings.pt.1.dddd4444.tmp"  # pid 1 runs: an infer still writing
    for path in [*stale, live]:
        path.write_bytes(b"partial")
    args = ["resume", str(run), "--epochs", "3"] if opener == "resume" else ["infer", str(run)]
    assert run_agc(capsys, *args).code == 0
    assert not any(p.exists() for p in stale)
    assert live.exists()


@pytest.mark.parametrize("existing", [False, True])
def test_failed_start_leaves_no_stub(capsys, tmp_path, monkeypatch, existing):
    from agc_cli.models.base import LossOutput
    from agc_cli.models.dgi import DGI

    monkeypatch.setattr(DGI, "loss", lambda self, b: LossOutput(self.weight.sum() * float("nan")))
    target = tmp_path / "r"
    if existing:
        target.mkdir()
    one_error(run_agc(capsys, "train", *TRAIN, "--model", "dgi", "--run-dir", str(target)), 5)
    assert target.is_dir() == existing
    if existing:
        assert list(target.iterdir()) == []  # as the user gave it


def test_sigterm_during_convert_removes_the_partial_store(capsys, tmp_path, monkeypatch):
    from agc_cli.data import store

    real = store.StoreWriter.allocate
    calls = {"n": 0}

    def allocate(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(store.StoreWriter, "allocate", allocate)
    r = run_agc(capsys, "convert", TINY, str(tmp_path / "st"))
    assert r.code == 130, r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .st.partial-*, no st


def test_partial_store_of_a_killed_convert_is_removed_by_the_next(capsys, tmp_path, dead_pid):
    dead = tmp_path / f".st.partial-{dead_pid}-0badc0de"
    live = tmp_path / ".st.partial-1-0123abcd"  # pid 1 runs: another convert in progress
    for folder in (dead, live):
        folder.mkdir()
        (folder / "x.npy").write_bytes(b"half")
    assert run_agc(capsys, "convert", TINY, str(tmp_path / "st")).code == 0
    assert not dead.exists() and live.exists()
    assert (tmp_path / "st" / "meta.json").is_file()
