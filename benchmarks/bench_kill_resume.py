"""Kill a training run with SIGKILL at random moments, resume it each time, and check that the
final weights equal an uninterrupted run's.

    python benchmarks/bench_kill_resume.py --trials 5 --kills 3 [--mini-batch] [--num-workers 2]

Each trial is killed up to ``--kills`` times, each time continued with ``agc resume`` (or, when
no checkpoint was complete yet, ``agc train`` into the same run directory, which a run without
weights may reuse). Half of the kills wait until a checkpoint is being written (a temporary
file in ``checkpoints/``), the first trial's first kill during the first checkpoint. Prints
trials, kills (and how many hit a checkpoint write, and the first one), runs that could not be
continued, and mismatches against an uninterrupted run (expected: 0 and 0).
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DATASET = "sbm:nodes=2000,clusters=4,degree=8,homophily=0.85,features=32,snr=2,seed=5"


def agc(*args: str) -> list[str]:
    return [sys.executable, "-m", "agc_cli", *args]


def train_args(run: Path, a: argparse.Namespace) -> list[str]:
    mode = "--mini-batch" if a.mini_batch else "--full-batch"
    return [
        "train", "--dataset", DATASET, "--model", "dgi", "--hidden-channels", "32",
        "--num-layers", "2", "--fan-out", "5,5", "--batch-size", "256", "--epochs",
        str(a.epochs), "--lr", "0.01", mode, "--num-workers", str(a.num_workers),
        "--save-every-batch" if a.mini_batch else "--save-every", "1", "--run-dir", str(run),
    ]  # fmt: skip


def final_weights(run: Path) -> dict:
    return torch.load(run / "model.pt", weights_only=True)


def continue_cmd(run: Path, a: argparse.Namespace) -> list[str]:
    """Resume from the newest checkpoint, or, when the kill came before the first one was
    complete, start again in the same run directory (a run without weights may be reused)."""
    if (run / "checkpoints" / "last.pt").is_file():
        return agc("resume", str(run))
    return agc(*train_args(run, a))


def checkpoint_temporaries(run: Path) -> list[Path]:
    folder = run / "checkpoints"
    return list(folder.glob(".*.tmp")) if folder.is_dir() else []


def kill_once(cmd: list[str], run: Path, at_write: bool, delay: float) -> tuple[bool, bool, int]:
    """Start ``cmd``; SIGKILL it after ``delay`` s, or (``at_write``) as soon as a checkpoint
    temporary appears. Returns (killed, killed while a checkpoint was being written, rc)."""
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.perf_counter() + delay
    while proc.poll() is None:
        if at_write and checkpoint_temporaries(run):
            break
        if not at_write and time.perf_counter() >= deadline:
            break
        time.sleep(0.0005 if at_write else 0.005)
    if proc.poll() is not None:
        return False, False, proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True, bool(checkpoint_temporaries(run)), proc.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--kills", type=int, default=3, help="kills per trial (each resumed)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--mini-batch", action="store_true")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref = tmp / "reference"
        t0 = time.perf_counter()
        subprocess.run(agc(*train_args(ref, a)), check=True, capture_output=True)
        duration = time.perf_counter() - t0
        expected = final_weights(ref)
        mismatches = kills = at_writes = first_writes = failures = 0
        for trial in range(a.trials):
            run = tmp / f"trial-{trial}"
            cmd = agc(*train_args(run, a))
            for k in range(a.kills):
                # Half of the kills wait for a checkpoint write (the first trial's first kill
                # always: during the first checkpoint); the others land at a random moment.
                at_write = (trial == 0 and k == 0) or rng.random() < 0.5
                first = not (run / "checkpoints" / "last.pt").is_file()
                killed, during, _ = kill_once(cmd, run, at_write, rng.uniform(0.2, 0.9) * duration)
                if not killed:
                    break
                kills += 1
                at_writes += during
                first_writes += during and first
                cmd = continue_cmd(run, a)
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0 and not (run / "model.pt").is_file():
                failures += 1
                print(f"trial {trial + 1}: could not continue (exit {done.returncode}): "
                      f"{done.stderr.strip().splitlines()[-1:]}")  # fmt: skip
                continue
            got = final_weights(run)
            same = all(
                torch.equal(expected[key], got[key])
                for key in expected
                if isinstance(expected[key], torch.Tensor)
            )
            mismatches += not same
            print(f"trial {trial + 1}: identical={same}")
        mode = "mini-batch" if a.mini_batch else "full-batch"
        print(f"{mode}, num_workers={a.num_workers}: trials={a.trials} kills={kills} "
              f"(during a checkpoint write {at_writes}, of them the first {first_writes}) "
              f"failed-to-continue={failures} mismatches={mismatches}")  # fmt: skip


if __name__ == "__main__":
    main()
