"""What checkpointing costs a short-epoch full-batch run: ``agc train`` with checkpoints every
epoch (``--checkpoint-interval 0``) against the default interval, one after the other in one
run (compare the ratio, not the seconds, on a shared machine).

Prints per setting the training seconds (``agc train --json``) and the lowest-loss epoch, then
the ratio default / every-epoch and whether both runs' ``best.pt`` hold the same weights (they
must: a deferred best.pt is still the lowest-loss epoch's).

    python benchmarks/bench_checkpoint_interval.py [--dataset Cora] [--model dgi] [--epochs 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def train(workdir: Path, name: str, args: argparse.Namespace, interval: float | None) -> dict:
    run = workdir / name
    cmd = [sys.executable, "-m", "agc_cli", "train", "--dataset", args.dataset, "--root",
           str(DATA), "--model", args.model, "--epochs", str(args.epochs), "--patience", "0",
           "--run-dir", str(run), "--json", "--quiet"]  # fmt: skip
    if interval is not None:
        cmd += ["--checkpoint-interval", str(interval)]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True, map_location="cpu")
    return {"seconds": out["seconds"], "best_epoch": best["trainer"]["epoch"],
            "best": best["model"]}  # fmt: skip  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Cora")
    p.add_argument("--model", default="dgi")
    p.add_argument("--epochs", type=int, default=300)
    args = p.parse_args()
    if args.dataset == "Cora" and not (DATA / "Cora" / "raw").is_dir():
        sys.exit(f"Cora's raw files are not in {DATA / 'Cora' / 'raw'}")
    with tempfile.TemporaryDirectory() as tmp:
        every = train(Path(tmp), "every", args, 0)
        default = train(Path(tmp), "default", args, None)
    same = every["best_epoch"] == default["best_epoch"] and all(
        torch.equal(every["best"][k], default["best"][k])
        for k, v in every["best"].items() if isinstance(v, torch.Tensor)
    )  # fmt: skip
    for name, r in (("every epoch (interval 0)", every), ("default interval", default)):
        print(f"{name:26s} train {r['seconds']:7.2f} s  best epoch {r['best_epoch']}")
    print(f"ratio default / every-epoch: {default['seconds'] / every['seconds']:.2f}; "
          f"same best.pt: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
