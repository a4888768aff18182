"""Data-parallel training: seed sharding, two gloo processes under torchrun, resume.

The multi-process tests start real processes (``torchrun`` or ``agc ... --nproc-per-node 2``) on
the CPU with the gloo backend; each launch takes several seconds on a 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dist_worker import GRAPH, settings_for

from agc_cli.engine import checkpoint as ckpt
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.errors import UsageError
from agc_cli.sampling import EpochOrder, ShardedEpochBatches, drop_consumed, shard_batches

WORKER = Path(__file__).with_name("dist_worker.py")
pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ----- sharding (no processes) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "batch", "world"),
    [(1000, 64, 2), (1000, 100, 4), (1025, 128, 2), (1001, 500, 2), (130, 32, 4), (7, 2, 3)],
)
def test_shards_are_disjoint_covering_with_equal_batch_counts(nodes, batch, world):
    perm = torch.randperm(nodes, generator=torch.Generator().manual_seed(nodes))
    shards = [shard_batches(perm.split(batch), r, world) for r in range(world)]
    counts = {len(s) for s in shards}
    assert len(counts) == 1  # every rank takes the same number of steps
    seeds = torch.cat([b for s in shards for b in s])
    assert seeds.numel() == nodes and torch.equal(seeds.sort().values, torch.arange(nodes))
    assert all(b.numel() > 0 for s in shards for b in s)
    # Step k's global batch is the k-th group of the single-process order (same seeds).
    for k in range(len(shards[0]) - 1):
        group = torch.cat([s[k] for s in shards])
        assert torch.equal(group, perm[k * batch * world : (k + 1) * batch * world])


def test_a_leftover_smaller_than_the_world_joins_the_last_step():
    batches = torch.arange(9).split(4)  # 4, 4, 1 seeds; world 2 -> group (4, 4) plus 1 seed
    shards = [shard_batches(batches, r, 2) for r in range(2)]
    assert [len(s) for s in shards] == [1, 1]
    assert sorted(torch.cat([shards[0][0], shards[1][0]]).tolist()) == list(range(9))


def test_fewer_seeds_than_processes_is_refused():
    with pytest.raises(UsageError, match="cannot be shared by 4 processes"):
        shard_batches([torch.arange(3)], 0, 4)


@pytest.mark.parametrize("start_seed", [0, 256, 300, 900])
def test_sharded_batches_length_matches_iteration_from_any_start(start_seed):
    for world in (2, 3):
        order = EpochOrder(1000, 128, shuffle=True, seed=5)
        sampler = ShardedEpochBatches(order, 1, world)
        sampler.set_epoch(3, start_seed=start_seed)
        batches = list(sampler)
        assert len(sampler) == len(batches)
        every = torch.cat(
            [torch.tensor(b) for r in range(world) for b in _rank_batches(order, r, world)]
        )
        assert sorted(every.tolist()) == sorted(order.order()[start_seed:].tolist())


def _rank_batches(order: EpochOrder, rank: int, world: int) -> list[list[int]]:
    sampler = ShardedEpochBatches(order, rank, world)
    sampler.set_epoch(order.epoch, start_seed=order.start)
    return list(sampler)


def test_drop_consumed_skips_whole_batches_only():
    batches = list(torch.arange(10).split(3))  # 3, 3, 3, 1
    assert [b.tolist() for b in drop_consumed(batches, 6)] == [[6, 7, 8], [9]]
    assert [b.tolist() for b in drop_consumed(batches, 4)] == [[3, 4, 5], [6, 7, 8], [9]]
    assert drop_consumed(batches, 10) == []


def test_refusals_come_before_any_process_group(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    full = settings_for("dgi", 128, 1).model_copy(update={"mini_batch": False})
    with pytest.raises(UsageError, match="full-batch training runs in one process"):
        open_session(full)
    free = settings_for("ssgc", 128, 1)
    with pytest.raises(UsageError, match="no trainable parameters"):
        open_session(free)
    assert not torch.distributed.is_initialized()


# ----- two gloo processes under torchrun ------------------------------------------------------


def _torchrun(out: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(WORKER), "--out", str(out), *args]  # fmt: skip
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"} if sys.platform == "linux" else None
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    """DGI trained 3 epochs (batch 128 per rank) by two processes."""
    out = tmp_path_factory.mktemp("ranks")
    _torchrun(out, "--epochs", "3", "--batch-size", "128")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_parameters_identical_across_ranks_after_training(two_ranks):
    a, b = (r["params"] for r in two_ranks)
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # ... and training moved them (not two copies of the initial weights).
    session = open_session(settings_for("dgi", 128, 3))
    initial = dict(session.model.named_parameters())
    assert any(not torch.equal(a[n], initial[n].detach()) for n in a)


def test_rank_seed_shards_are_disjoint_and_cover_each_epoch(two_ranks):
    seen = [r["seen"] for r in two_ranks]
    assert len(seen[0]) == len(seen[1]) and len(seen[0]) % 3 == 0
    per_epoch = len(seen[0]) // 3
    nodes = int(GRAPH.split("nodes=")[1].split(",")[0])
    for epoch in range(3):
        part = [sum(s[epoch * per_epoch : (epoch + 1) * per_epoch], []) for s in seen]
        assert not set(part[0]) & set(part[1])
        assert sorted(part[0] + part[1]) == list(range(nodes))


def test_each_process_uses_cores_divided_by_processes_threads(two_ranks):
    assert {r["threads"] for r in two_ranks} == {max(1, _cores() // 2)}


def test_loss_close_to_one_process_with_the_same_global_batch(two_ranks):
    session = open_session(settings_for("dgi", 256, 3))
    single = Trainer(session.graph, session.model, session.settings, session.device, None)
    single.fit()
    two = [h["loss"] for h in two_ranks[0]["history"]]
    one = [h["loss"] for h in single.history]
    assert two == [h["loss"] for h in two_ranks[1]["history"]]  # the epoch loss is all-reduced
    for a, b in zip(two, one, strict=True):
        assert abs(a - b) / abs(b) < 0.02, (two, one)


# ----- the command line: agc train/resume --nproc-per-node 2 ----------------------------------

TRAIN = ["--dataset", GRAPH, "--model", "dgi", "--batch-size", "128", "--fan-out", "5",
         "--hidden-channels", "32", "--device", "cpu", "--seed", "0"]  # fmt: skip


def _agc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agc_cli", *args], capture_output=True, text=True, timeout=600
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "model.pt", weights_only=True)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def test_two_process_run_resumes_exactly(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    done = _agc("train", *TRAIN, "--epochs", "2", "--nproc-per-node", "2", "--run-dir", str(whole))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "processes: 2 (gloo)" in done.stderr  # the system panel is a header: stderr
    done = _agc("train", *TRAIN, "--epochs", "1", "--nproc-per-node", "2", "--run-dir", str(split))
    assert done.returncode == 0, done.stderr[-3000:]
    state = ckpt.load_checkpoint(split / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    done = _agc("resume", str(split), "--epochs", "2", "--nproc-per-node", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "re-sharded" not in done.stderr
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in _metrics(p)] for p in (whole, split)]
    assert losses[0] == losses[1] and len(losses[0]) == 2  # rank 0 alone wrote metrics


def test_resume_on_another_process_count_re_shards_with_a_note(tmp_path):
    run = tmp_path / "run"
    done = _agc("train", *TRAIN, "--epochs", "2", "--nproc-per-node", "2", "--run-dir", str(run),
                "--save-every-batch", "3")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    steps = sorted((run / "checkpoints").glob("step-*.pt"))
    mid = next(p for p in steps if ckpt.load_checkpoint(p)["trainer"]["batch"] > 0)
    trainer = ckpt.load_checkpoint(mid)["trainer"]
    assert trainer["seeds_done"] == trainer["batch"] * 128 * 2  # two ranks' seeds per step
    done = _agc("resume", str(run), "--checkpoint", mid.name)  # one process now
    assert done.returncode == 0, done.stderr[-3000:]
    assert "written by 2 process(es), resuming on 1" in done.stderr
    assert "re-sharded" in done.stderr
    assert [r["epoch"] for r in _metrics(run)] == [1, 2]


def _metrics(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_from_one_on_disk_store(tmp_path):
    store, run = tmp_path / "store", tmp_path / "run"
    done = _agc("convert", GRAPH, str(store))
    assert done.returncode == 0, done.stderr[-3000:]
    args = [a if a != GRAPH else str(store) for a in TRAIN]
    done = _agc("train", *args, "--epochs", "2", "--nproc-per-node", "2", "--run-dir", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "processes: 2 (gloo)" in done.stderr  # the system panel is a header: stderr
    assert [r["epoch"] for r in _metrics(run)] == [1, 2]
    assert (run / "model.pt").is_file()


def test_a_failing_rank_exit_code_reaches_the_launching_command(tmp_path):
    store = tmp_path / "store"
    assert _agc("convert", GRAPH, str(store)).returncode == 0
    features = next(store.glob("x*.npy"))
    features.write_bytes(features.read_bytes()[:-1000])  # truncated: exit code 3 in every rank
    args = [a if a != GRAPH else str(store) for a in TRAIN]
    done = _agc("train", *args, "--nproc-per-node", "2", "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 3, done.stderr[-3000:]
    assert features.name in done.stderr


def test_refused_settings_start_no_process(capsys, tmp_path):
    from cli_helpers import run_agc

    result = run_agc(capsys, "train", *TRAIN, "--full-batch", "--nproc-per-node", "2",
                     "--run-dir", str(tmp_path / "run"))  # fmt: skip
    assert result.code == 2 and "full-batch training runs in one process" in result.err
    assert "starting" not in result.err
    result = run_agc(capsys, "train", *TRAIN, "--nproc-per-node", "0")
    assert result.code == 2 and "nproc_per_node" in result.err


@pytest.mark.parametrize("command", ["run", "infer", "cluster", "profile", "stats", "convert"])
def test_single_process_commands_refuse_to_run_under_torchrun(capsys, monkeypatch, command):
    from cli_helpers import run_agc

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = run_agc(capsys, command, "--help")
    assert result.code == 2 and f"agc {command} runs in one process" in result.err
