"""Kill a training run with SIGKILL at random moments, resume it each time, and check that the
final weights equal an uninterrupted run's.

    python benchmarks/bench_kill_resume.py --trials 5 [--mini-batch] [--num-workers 2]

Prints the number of trials, kills that landed, and mismatches (expected: 0).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5)
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
        mismatches = kills = 0
        for trial in range(a.trials):
            run = tmp / f"trial-{trial}"
            proc = subprocess.Popen(agc(*train_args(run, a)), stderr=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL)  # fmt: skip
            # Kill somewhere in the run (start-up included): a random fraction of its length.
            time.sleep(rng.uniform(0.2, 0.95) * duration)
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            if killed:
                # A kill before the first checkpoint leaves nothing to resume: train afresh.
                if (run / "checkpoints" / "last.pt").is_file():
                    cmd = agc("resume", str(run))
                else:
                    run = tmp / f"trial-{trial}-fresh"
                    cmd = agc(*train_args(run, a))
                subprocess.run(cmd, check=True, capture_output=True)
            got = final_weights(run)
            same = all(
                torch.equal(expected[k], got[k])
                for k in expected
                if isinstance(expected[k], torch.Tensor)
            )
            mismatches += not same
            print(f"trial {trial + 1}: killed={killed} "
                  f"identical={same}")  # fmt: skip
        mode = "mini-batch" if a.mini_batch else "full-batch"
        print(f"{mode}, num_workers={a.num_workers}: trials={a.trials} kills={kills} "
              f"mismatches={mismatches}")  # fmt: skip


if __name__ == "__main__":
    main()
